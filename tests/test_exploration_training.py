"""The exploration estimators train on TRL's real GRPOTrainer through PolyEPOTrainer: the advantages
it uses are the estimator's on the logged groups, and a step changes the weights."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from polyepo.advantages import compute_advantages  # noqa: E402
from polyepo.rewards import make_reward  # noqa: E402
from polyepo.tasks import load_task  # noqa: E402
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer  # noqa: E402


@pytest.mark.parametrize("estimator, options", [
    ("pkpo", {}),
    ("darling", {}),
    ("uniqueness", {"alpha": 0.5}),
    ("outcome_explore", {"coef": 0.3}),
])
def test_estimator_trains_on_trl(toy_base, tmp_path, estimator, options):
    args = PolyEPOConfig(output_dir=str(tmp_path), estimator=estimator, estimator_options=options, clusterer="toy_paths",
                         use_cpu=True, bf16=False, per_device_train_batch_size=16, num_generations=8,
                         max_completion_length=6, learning_rate=1e-3, report_to=[], save_strategy="no", temperature=1.0,
                         top_k=0, disable_tqdm=True, logging_steps=1, seed=0, max_steps=1)
    trainer = PolyEPOTrainer(model=AutoModelForCausalLM.from_pretrained(toy_base), reward_funcs=[make_reward("toy_paths")],
                             args=args, train_dataset=Dataset.from_list(load_task("toy_paths").rows("train", 64)),
                             processing_class=AutoTokenizer.from_pretrained(toy_base))
    before = torch.cat([p.detach().flatten().clone() for p in trainer.model.parameters()])
    trainer.train()
    after = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    rewards = np.array(trainer._logs["rewards"]["toy_paths"])
    clusters = np.array(trainer._logs["extra"]["cluster"])
    adv = np.array(trainer._logs["advantages"])
    expected = compute_advantages(rewards, clusters, group_sizes=8, estimator=estimator,
                                  **args.estimator_kwargs())
    np.testing.assert_allclose(adv, expected)
    if np.abs(expected).max() > 0:
        assert not torch.equal(before, after)
