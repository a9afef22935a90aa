"""Run by tests/test_train.py under torchrun with 2 CPU processes (gloo): one PolyEPOTrainer step.

Each process writes rank{R}.json with the global rewards/clusters it saw and the advantages of
its own rows, so the test can check that groups split across processes are handled whole.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from polyepo.rewards import make_reward
from polyepo.tasks import load_task
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer

model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
record = {}


class Recording(PolyEPOTrainer):
    def group_step(self, rewards_per_func, results, G):
        record["global_rewards"] = rewards_per_func[:, 0].tolist()
        record["global_clusters"] = [i for res in results for i in res.ids]
        return super().group_step(rewards_per_func, results, G)

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        record["local_advantages"] = out["advantages"].tolist()
        record["local_size"] = len(inputs)
        return out


args = PolyEPOConfig(output_dir=str(out_dir / "run"), clusterer="toy_paths", use_cpu=True, bf16=False,
                     per_device_train_batch_size=4, num_generations=8, max_completion_length=6, max_steps=1,
                     learning_rate=1e-3, report_to=[], save_strategy="no", top_k=0, disable_tqdm=True, seed=0,
                     ddp_backend="gloo", log_jsonl=False)
trainer = Recording(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[make_reward("toy_paths")],
                    args=args, train_dataset=Dataset.from_list(load_task("toy_paths").rows("train", 32)),
                    processing_class=AutoTokenizer.from_pretrained(model_dir))
trainer.train()
rank = dist.get_rank() if dist.is_initialized() else 0
(out_dir / f"rank{rank}.json").write_text(json.dumps(record))
