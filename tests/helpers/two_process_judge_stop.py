"""Run by tests/test_train_judge.py under torchrun with 2 CPU processes (gloo): training whose
judge goes down after the first step and stays down.

Each process writes rank{R}.json with the error it stopped on, its message and the checkpoint it
names, so the test can check that both stop (none waits for ddp_timeout) with the same checkpoint.
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

model_dir, out_dir, base_url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
judge = {"model": "standin", "base_url": base_url, "prompt": "code", "cache_path": None, "max_retries": 1,
         "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "breaker_after": 0, "max_wait_s": 2.0,
         "status_interval_s": 0.5}
args = PolyEPOConfig(output_dir=str(out_dir / "run"), clusterer="judge", clusterer_options=judge, use_cpu=True,
                     bf16=False, per_device_train_batch_size=8, num_generations=8, max_completion_length=6,
                     max_steps=3, save_steps=10, learning_rate=1e-3, report_to=[], top_k=0, disable_tqdm=True,
                     seed=0, ddp_backend="gloo", log_jsonl=False)
trainer = PolyEPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=[make_reward("toy_paths")],
                         args=args, train_dataset=Dataset.from_list(load_task("toy_paths").rows("train", 32)),
                         processing_class=AutoTokenizer.from_pretrained(model_dir))
record = {"error": None}
try:
    trainer.train()
except Exception as e:  # what each process stops on
    record = {"error": type(e).__name__, "message": str(e), "checkpoint": getattr(e, "checkpoint", None)}
rank = dist.get_rank() if dist.is_initialized() else 0
(out_dir / f"rank{rank}.json").write_text(json.dumps(record))
