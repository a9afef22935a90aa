"""Time per training step with a slow reward and a slow judge: sequential against overlapped.

    python benchmarks/overlap.py [--steps 5] [--pairs 1.5:1.0,1.0:1.5] [--check]

PolyEPOTrainer on the toy task (the bundled toy model, 16 prompts x 8 completions per step),
with a reward whose every call costs S seconds (the toy reward, then a wait of S, as a reward
waiting on its sandbox jobs) and the LLM judge as the clusterer: the stand-in judge on
127.0.0.1, through the real ``openai`` client, answering every request after L seconds
(``max_concurrency`` 16: a step's 16 groups are judged together, so clustering a step takes
about L). Each (S, L) pair of ``--pairs`` trains twice in this one process, with
``overlap_clustering`` off (clustering starts once the rewards are in: S + L) and on (the
clustering runs beside the rewards: max(S, L)); the first step of each run is left out (it
opens connections).

Printed per run: the reward and clustering phase of a step (seconds from the start of the reward
functions to the clusters in hand: ``time_reward_s + time_cluster_wait_s``), the whole step
(TRL's ``step_time``: generation, rewards, clustering, the update), and whether the target holds:
overlapped phase <= 1.1 x max(S, L). The rest of a toy step (generation and the update, ~0.1 s)
is the same in both runs. torch runs on one thread (``OMP_NUM_THREADS=1`` unless set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one torch thread: on a small shared machine, torch's thread pool spinning beside the judge's
# and the server's threads makes the whole step several times slower and noisy
os.environ.setdefault("OMP_NUM_THREADS", "1")


def slow_reward(base, seconds: float):
    """``base`` followed by a wait of ``seconds`` (a reward waiting on its sandbox)."""

    def reward(prompts, completions, **kwargs):
        out = base(prompts, completions, **kwargs)
        time.sleep(seconds)
        return out

    reward.__name__ = f"toy_paths_plus_{seconds:g}s"
    return reward


def train_once(base_url: str, model_dir, data, steps: int, overlap: bool, S: float) -> dict[str, float]:
    """One toy run against the judge at ``base_url``; medians per step, the first step left out."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback

    from polyepo.rewards import make_reward
    from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer

    options = dict(model="standin", base_url=base_url, prompt="code", cache_path=None, max_concurrency=16)
    with tempfile.TemporaryDirectory() as out:
        trainer = PolyEPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir), processing_class=AutoTokenizer.from_pretrained(model_dir),
            reward_funcs=[slow_reward(make_reward("toy_paths"), S)], train_dataset=data,
            args=PolyEPOConfig(output_dir=out, clusterer="judge", clusterer_options=options, overlap_clustering=overlap,
                               use_cpu=True, bf16=False, per_device_train_batch_size=128, num_generations=8,
                               max_completion_length=6, max_steps=steps, learning_rate=1e-3, report_to=[],
                               save_strategy="no", top_k=0, disable_tqdm=True, logging_steps=1, seed=0, log_jsonl=False))
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    rows = [h for h in trainer.state.log_history if "polyepo/time_reward_s" in h][1:]
    return {"phase": statistics.median(h["polyepo/time_reward_s"] + h["polyepo/time_cluster_wait_s"] for h in rows),
            "step": statistics.median(h["step_time"] for h in rows),
            "cluster": statistics.median(h["polyepo/time_cluster_s"] for h in rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="steps per run (the first is left out)")
    ap.add_argument("--pairs", default="1.5:1.0,1.0:1.5", help="S:L pairs, seconds")
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args()

    import transformers
    from datasets import Dataset

    from polyepo.models import resolve_model
    from polyepo.standin import ChatServer, Reply
    from polyepo.standin.judge import StandInJudge
    from polyepo.tasks import load_task

    transformers.utils.logging.set_verbosity_error()
    model_dir = resolve_model("toy-paths-base")
    data = Dataset.from_list(load_task("toy_paths").rows("train", 2000))
    judge = StandInJudge(clusterer="toy_paths", clusterer_options={"width": 3})
    latency = {"s": 0.0}

    def delayed(body):
        answer = judge(body)
        return Reply(answer.content, delay_s=latency["s"]) if isinstance(answer, Reply) else answer

    pairs = [tuple(float(x) for x in p.split(":")) for p in args.pairs.split(",")]
    missed = False
    with ChatServer(delayed, keep_requests=False) as server:
        print(f"toy task, 16 groups of 8 per step, {args.steps - 1} timed steps per run; medians in seconds per step")
        print(f"{'S':>5} {'L':>5}  {'run':<11} {'reward+clustering':>18} {'whole step':>11} {'clustering':>11}")
        for S, L in pairs:
            latency["s"] = L
            res = {mode: train_once(server.base_url, model_dir, data, args.steps, mode == "overlapped", S)
                   for mode in ("sequential", "overlapped")}
            for mode, r in res.items():
                print(f"{S:>5.2f} {L:>5.2f}  {mode:<11} {r['phase']:>18.3f} {r['step']:>11.3f} {r['cluster']:>11.3f}")
            bound = 1.1 * max(S, L)
            ok = res["overlapped"]["phase"] <= bound
            missed |= not ok
            print(f"{'':>13}target: overlapped {res['overlapped']['phase']:.3f} <= 1.1 x max(S, L) = {bound:.3f}: "
                  f"{'met' if ok else 'MISSED'} (sequential {res['sequential']['phase']:.3f}, S + L = {S + L:.2f})")
    print(json.dumps({"pairs": pairs, "met": not missed}))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
