"""Every estimator trains on TRL's real GRPOTrainer through PolyEPOTrainer: the advantages it trains
on are ``compute_advantages`` over the logged step (the batch step and the historical state
included), a step changes the weights, and the historical ``outcome_explore`` resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402

from polyepo.advantages import ESTIMATORS, HISTORY_FILE, AnswerHistory, compute_advantages  # noqa: E402
from polyepo.rewards import make_reward  # noqa: E402
from polyepo.tasks import load_task  # noqa: E402
from polyepo.train.trl import PolyEPOConfig, PolyEPOTrainer  # noqa: E402

HISTORICAL = {"variant": "historical", "coef": 1.0}

#: every registered estimator at its defaults, plus the option variants the comparison runs
CASES = [(name, {}) for name in ESTIMATORS.names()] + [
    ("pass_at_k", {"scale": "std", "reduction": "mean"}),  # Pass@k Training
    ("pkpo", {"variant": "loo"}),
    ("darling", {"correct_only": True}),
    ("uniqueness", {"alpha": 0.5}),
    ("outcome_explore", HISTORICAL),
]


def rows(n=64, copies=1):
    """``n`` problems whose prompts are all different (a logged prompt names its problem id), each
    ``copies`` times (so that one epoch sees a problem again)."""
    out, seen = [], set()
    for row in load_task("toy_paths").rows("train", 4 * n):
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            out.append(row)
    return out[:n] * copies


class StepLog(TrainerCallback):
    """What each optimiser step trained on, read from TRL's logs after the step."""

    def __init__(self):
        self.trainer = None
        self.steps: list[dict[str, np.ndarray]] = []

    def on_step_end(self, args, state, control, **kwargs):
        logs = self.trainer._logs
        self.steps.append({"prompts": list(logs["prompt"]), "rewards": np.array(logs["rewards"]["toy_paths"]),
                           "clusters": np.array(logs["extra"]["cluster"]), "advantages": np.array(logs["advantages"])})


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True  # after this step's checkpoint: an interruption


def make_trainer(toy_base, out, estimator, options, n_rows=64, copies=1, **overrides):
    kwargs = dict(use_cpu=True, bf16=False, per_device_train_batch_size=16, num_generations=8, max_completion_length=6,
                  learning_rate=1e-3, report_to=[], save_strategy="no", temperature=1.0, top_k=0, disable_tqdm=True,
                  logging_steps=1, seed=0, max_steps=1)
    args = PolyEPOConfig(output_dir=str(out), estimator=estimator, estimator_options=options, clusterer="toy_paths",
                         **{**kwargs, **overrides})
    trainer = PolyEPOTrainer(model=AutoModelForCausalLM.from_pretrained(toy_base), reward_funcs=[make_reward("toy_paths")],
                             args=args, train_dataset=Dataset.from_list(rows(n_rows, copies)),
                             processing_class=AutoTokenizer.from_pretrained(toy_base))
    log = StepLog()
    log.trainer = trainer
    trainer.add_callback(log)
    return trainer, log


def expected_advantages(trainer, steps, history=None):
    """compute_advantages over each logged step, in order (one history across steps, if any)."""
    problem = {row["prompt"]: row["problem_id"] for row in rows()}
    options = dict(trainer.args.estimator_kwargs())
    if history is not None:
        options["history"] = history
    return [compute_advantages(s["rewards"], s["clusters"], group_sizes=8, estimator=trainer.args.estimator,
                               prompt_keys=[problem[p] for p in s["prompts"]] if history is not None else None,
                               **options) for s in steps]


def weights(model):
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("estimator, options", CASES, ids=[f"{n}{'-' if o else ''}{'-'.join(map(str, o.values()))}"
                                                           for n, o in CASES])
def test_every_estimator_trains_on_trl(toy_base, tmp_path, estimator, options):
    historical = options.get("variant") == "historical"
    # historical: 2 prompts, seen at both steps
    trainer, log = make_trainer(toy_base, tmp_path, estimator, options, **(dict(max_steps=2, n_rows=2) if historical else {}))
    assert (trainer.answer_history is not None) == historical
    before = weights(trainer.model)
    trainer.train()
    expected = expected_advantages(trainer, log.steps, AnswerHistory() if historical else None)
    for step, want in zip(log.steps, expected, strict=True):
        np.testing.assert_allclose(step["advantages"], want, atol=1e-12)
    if historical:  # the counts carried from step 1 changed step 2's advantages
        assert trainer.answer_history.groups == 4
        fresh = expected_advantages(trainer, log.steps[1:], AnswerHistory())[0]
        assert not np.allclose(fresh, expected[1])
    if estimator == "reinforce_pp_baseline":  # whitened over the whole step (2 groups), not per group
        assert abs(expected[0].mean()) < 1e-9 and expected[0].std(ddof=1) == pytest.approx(1.0, abs=1e-6)
    if np.abs(expected[-1]).max() > 0:
        assert not torch.equal(before, weights(trainer.model))


def test_historical_outcome_explore_resumes_exactly(toy_base, tmp_path):
    """A run interrupted after step 2 and resumed from its checkpoint trains on the same
    advantages and ends with the same weights as an uninterrupted one; the counts are in the
    checkpoint, and a checkpoint without them is refused."""
    # 2 problems, 4 copies each: one epoch of 4 steps, every step sees both (TRL's sampler does not
    # restore a later epoch's order on resume: the run stays within its first)
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, n_rows=2, copies=4)
    whole, whole_log = make_trainer(toy_base, tmp_path / "whole", "outcome_explore", HISTORICAL, **common)
    whole.train()
    first, _ = make_trainer(toy_base, tmp_path / "cut", "outcome_explore", HISTORICAL, **common)
    first.add_callback(StopAt(2))
    first.train()
    assert first.state.global_step == 2
    saved = tmp_path / "cut" / "checkpoint-2" / HISTORY_FILE
    assert AnswerHistory.load(saved) == first.answer_history and first.answer_history.groups == 4
    second, second_log = make_trainer(toy_base, tmp_path / "cut", "outcome_explore", HISTORICAL, **common)
    second.train(resume_from_checkpoint=True)
    assert second.state.global_step == 4 and len(second_log.steps) == 2
    for got, want in zip(second_log.steps, whole_log.steps[2:], strict=True):
        assert got["prompts"] == want["prompts"]
        np.testing.assert_array_equal(got["advantages"], want["advantages"])
    assert torch.equal(weights(second.model), weights(whole.model))
    assert second.answer_history == whole.answer_history
    assert AnswerHistory.load(tmp_path / "cut" / "checkpoint-4" / HISTORY_FILE) == whole.answer_history
    # without the restored counts, step 3 would have trained on other advantages
    fresh = expected_advantages(second, second_log.steps[:1], AnswerHistory())[0]
    assert not np.allclose(fresh, second_log.steps[0]["advantages"])
    saved.unlink()
    third, _ = make_trainer(toy_base, tmp_path / "cut", "outcome_explore", HISTORICAL, **common)
    with pytest.raises(FileNotFoundError, match=f"holds no {HISTORY_FILE}"):
        third.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-2"))


def test_evaluation_batches_do_not_count(toy_base, tmp_path):
    trainer, _ = make_trainer(toy_base, tmp_path, "outcome_explore", HISTORICAL, per_device_eval_batch_size=16)
    trainer.train()
    before = trainer.answer_history.state_dict()
    metrics = trainer.evaluate(Dataset.from_list(rows()[:4]))
    assert "eval_reward" in metrics and trainer.answer_history.state_dict() == before
