"""Run by tests/test_train.py under torchrun with 2 CPU processes (gloo): PolyEPOTrainer steps.

Each process writes rank{R}.json with the global rewards/clusters (and prompt keys) it saw and the
advantages of its own rows, so the test can check that groups split across processes are handled
whole. ``historical`` (third argument) trains the historical outcome_explore for 2 steps on 2
problems (so step 2 sees step 1's problems), saving a checkpoint each step; ``resume`` (fourth)
then continues that run from checkpoint-1 for its second step, and each process also records the
answer history it restored and the one it ends with.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from polyepo.rewards import make_reward
from polyepo.tasks import load_task
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer

model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
historical, resume = "historical" in sys.argv[3:], "resume" in sys.argv[3:]
record = {"steps": []}


class Recording(PolyEPOTrainer):
    def group_step(self, rewards_per_func, results, G, prompt_keys=None):
        step = {"global_rewards": rewards_per_func[:, 0].tolist(), "global_clusters": [i for res in results for i in res.ids],
                "prompt_keys": prompt_keys}
        record["steps"].append(step)
        record.update(step)
        return super().group_step(rewards_per_func, results, G, prompt_keys)

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        record["local_advantages"] = out["advantages"].tolist()
        record["steps"][-1]["local_advantages"] = out["advantages"].tolist()
        record["local_size"] = len(inputs)
        return out


options = dict(estimator="outcome_explore", estimator_options={"variant": "historical", "coef": 1.0}, max_steps=2,
               save_strategy="steps", save_steps=1) if historical else dict(max_steps=1, save_strategy="no")
rows = load_task("toy_paths").rows("train", 32)
rows = rows[:1] * 8 if historical else rows  # one problem: every step sees it again
args = PolyEPOConfig(output_dir=str(out_dir / "run"), clusterer="toy_paths", use_cpu=True, bf16=False,
                     per_device_train_batch_size=4, num_generations=8, max_completion_length=6,
                     learning_rate=1e-3, report_to=[], top_k=0, disable_tqdm=True, seed=0,
                     ddp_backend="gloo", log_jsonl=False, **options)
trainer = Recording(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[make_reward("toy_paths")],
                    args=args, train_dataset=Dataset.from_list(rows),
                    processing_class=AutoTokenizer.from_pretrained(model_dir))


class Restored(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        if trainer.answer_history is not None:  # what this process starts from
            record["restored"] = trainer.answer_history.state_dict()


trainer.add_callback(Restored())
trainer.train(resume_from_checkpoint=str(out_dir / "run" / "checkpoint-1") if resume else None)
if trainer.answer_history is not None:
    record["history"] = trainer.answer_history.state_dict()
rank = dist.get_rank() if dist.is_initialized() else 0
(out_dir / f"rank{rank}{'-resumed' if resume else ''}.json").write_text(json.dumps(record))
