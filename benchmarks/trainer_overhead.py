"""Time per training step: PolyEPOTrainer (Poly-EPO + offline clusterer) vs TRL's plain GRPOTrainer.

    python benchmarks/trainer_overhead.py [--steps 20] [--rounds 3] [--check]

Same tiny warm-started model, same data, same batch (16 prompts x 8 completions), same seed;
the two trainers run in alternation within one process, ``--rounds`` times each, and the script
prints the median wall-clock and CPU seconds per step of each and their ratios. The target
(<= 1.05x) is judged on CPU time, which other processes on a shared machine disturb far less
than wall time. The extra work per step is clustering the groups, the closed-form advantages
and a few log entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args()

    import transformers
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from polyepo.models import resolve_model
    from polyepo.rewards import make_reward
    from polyepo.tasks import load_task
    from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer

    transformers.utils.logging.set_verbosity_error()
    model_dir = resolve_model("toy-paths-base")
    data = Dataset.from_list(load_task("toy_paths").rows("train", 2000))
    common = dict(use_cpu=True, bf16=False, per_device_train_batch_size=128, num_generations=8, max_completion_length=6,
                  max_steps=args.steps, learning_rate=1e-3, report_to=[], save_strategy="no", top_k=0,
                  disable_tqdm=True, logging_steps=args.steps, seed=0, loss_type="dr_grpo", scale_rewards="none",
                  epsilon_high=0.28)

    def run(kind: str) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as out:
            model = AutoModelForCausalLM.from_pretrained(model_dir)
            tok = AutoTokenizer.from_pretrained(model_dir)
            reward = make_reward("toy_paths")
            if kind == "polyepo":
                trainer = PolyEPOTrainer(model=model, reward_funcs=[reward], processing_class=tok, train_dataset=data,
                                         args=PolyEPOConfig(output_dir=out, estimator="poly_epo", clusterer="toy_paths",
                                                            log_jsonl=False, **common))
            else:
                trainer = GRPOTrainer(model=model, reward_funcs=[reward], processing_class=tok, train_dataset=data,
                                      args=GRPOConfig(output_dir=out, **common))
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
            t, c = time.perf_counter(), time.process_time()
            trainer.train()
            return (time.perf_counter() - t) / args.steps, (time.process_time() - c) / args.steps

    run("grpo")  # warm-up: imports, thread pools, allocator
    times: dict[str, list[tuple[float, float]]] = {"grpo": [], "polyepo": []}
    for r in range(args.rounds):
        for kind in (("grpo", "polyepo") if r % 2 == 0 else ("polyepo", "grpo")):
            times[kind].append(run(kind))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    for kind, label in (("grpo", "plain GRPOTrainer"), ("polyepo", "PolyEPOTrainer   ")):
        rounds = ", ".join(f"{c * 1000:.0f}" for _, c in times[kind])
        print(f"{label}: wall {med[kind][0] * 1000:7.1f} ms/step, CPU {med[kind][1] * 1000:7.1f} ms/step (CPU per round: {rounds})")
    wall, cpu = med["polyepo"][0] / med["grpo"][0], med["polyepo"][1] / med["grpo"][1]
    print(f"ratio PolyEPO / GRPO: wall {wall:.3f}x, CPU {cpu:.3f}x   target <= 1.05x (CPU): {'met' if cpu <= 1.05 else 'MISSED'}")
    return 1 if args.check and cpu > 1.05 else 0


if __name__ == "__main__":
    sys.exit(main())
