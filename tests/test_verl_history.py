"""The historical ``outcome_explore`` on verl 0.9 (CPU, no Ray): its answer counts through verl's own
advantage code, keyed by problem id (never verl's per-step uid), and in verl's own checkpoints.

Runs where verl is installed (``bash scripts/setup.sh verl``). Not covered: a real resumed verl
run (Ray workers, FSDP, vLLM), which needs GPUs; the worker group's checkpoint calls are a
stand-in here, everything around them (``_save_checkpoint``, ``_load_checkpoint``, the tracker
file, the dataloader state, the checkpoint callback) is verl's code.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest

verl = pytest.importorskip(
    "verl", reason="verl is not installed in this environment; it lives in .venv-verl (bash scripts/setup.sh verl)"
)
warnings.filterwarnings("ignore", category=UserWarning)

import torch  # noqa: E402
from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: E402
from verl.trainer.ppo.checkpoint_callback import build_checkpoint_callback  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

from polyepo.advantages import HISTORY_FILE, AnswerHistory, compute_advantages  # noqa: E402
from polyepo.train.verl.estimators import estimator_columns  # noqa: E402
from polyepo.train.verl.groups import row_columns  # noqa: E402
from polyepo.train.verl.settings import VerlSettings  # noqa: E402
from polyepo.train.verl.trainer import PolyEPOTrainerSync, answer_history_for, rows_from_fields  # noqa: E402
from test_verl import NAMES, algo_config, compose_config, expected, make_batch, tiny_tokenizer  # noqa: E402

HISTORICAL = {"variant": "historical", "coef": 1.0}


def a_step(rng, problems):
    """One verl batch: 8 rollouts per problem, fresh uids (verl draws them anew every step), shuffled."""
    uids = np.repeat([str(uuid.uuid4()) for _ in problems], 8)
    keys = np.repeat(problems, 8)
    rewards = rng.integers(0, 2, uids.size).astype(float)
    answers = rng.choice([1, 2, 3, 100], uids.size)
    lengths = rng.integers(1, 7, uids.size)
    perm = rng.permutation(uids.size)
    return uids[perm], keys[perm], rewards[perm], answers[perm], lengths[perm]


def test_counts_carry_across_steps_by_problem_id():
    rng = np.random.default_rng(0)
    history, reference = AnswerHistory(), AnswerHistory()
    cfg = algo_config(estimator_options=HISTORICAL)
    for _ in range(3):
        uids, keys, rewards, answers, lengths = a_step(rng, ["q0", "q1"])
        with estimator_columns(uids, {"cluster_id": answers, "prompt_key": keys}, history=history) as step:
            data = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator=NAMES["outcome_explore"], config=cfg)
        want = compute_advantages(rewards, answers, group_ids=uids, estimator="outcome_explore", prompt_keys=keys,
                                  history=reference, **HISTORICAL)
        np.testing.assert_allclose(data.batch["advantages"].numpy(), expected(want, lengths), rtol=1e-6, atol=1e-6)
        assert step.metrics["polyepo/groups"] == 2
    assert history == reference and history.groups == 6 and len(history) == 2  # two problems, not six uids
    fresh = compute_advantages(rewards, answers, group_ids=uids, estimator="outcome_explore", prompt_keys=keys,
                               history=AnswerHistory(), **HISTORICAL)
    assert not np.allclose(fresh, want)  # the counts of the first two steps changed the third


def test_without_the_trainers_history_it_fails_loudly():
    uids, keys, rewards, answers, lengths = a_step(np.random.default_rng(1), ["q0"])
    with estimator_columns(uids, {"cluster_id": answers}):
        with pytest.raises(RuntimeError, match="only polyepo's trainer holds.*polyepo_sync"):
            compute_advantage(make_batch(rewards, uids, lengths), adv_estimator=NAMES["outcome_explore"],
                              config=algo_config(estimator_options=HISTORICAL))
    with estimator_columns(uids, {"cluster_id": answers}):  # the batch variant keeps no state
        compute_advantage(make_batch(rewards, uids, lengths), adv_estimator=NAMES["outcome_explore"], config=algo_config())


def test_prompt_keys_are_problem_ids_from_the_rows_extra_info():
    """The agent loop stores the dataset row's ``extra_info`` with every rollout; its problem id
    is the key, the prompt text where there is none."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    tok = tiny_tokenizer()
    fields = []
    for uid, info in [("u1", {"index": 0, "problem_id": "q7"}), ("u1", {"index": 0, "problem_id": "q7"}), ("u2", {"index": 3})]:
        ids = torch.tensor(tok("42", add_special_tokens=False)["input_ids"])
        fields.append({"uid": uid, "raw_prompt": [{"role": "user", "content": f"{uid}?"}], "responses": ids,
                       "rm_scores": torch.zeros(len(ids)), "extra_info": info,
                       "extra_fields": {"reward_extra_info": {"score": 0.0, "reward_none": 0}}})
    rows = rows_from_fields(list_of_dict_to_tensordict(fields), tok, np.array([True, True, True]))
    assert rows.problem_ids == ["q7", "q7", None]
    assert row_columns(rows)["prompt_key"].tolist() == ["q7", "q7", "u2?"]


class StandInActorWorkers:
    """The actor worker group's two checkpoint calls (its GPU workers are not started here)."""

    def __init__(self):
        self.loaded = None

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        Path(local_path).mkdir(parents=True, exist_ok=True)
        (Path(local_path) / "weights.txt").write_text(str(global_step))

    def load_checkpoint(self, local_path, del_local_after_load=False):
        self.loaded = (Path(local_path) / "weights.txt").read_text()


def trainer_for(cfg) -> PolyEPOTrainerSync:
    """A polyepo_sync trainer with what verl's checkpoint methods use (no workers, no Ray)."""
    trainer = object.__new__(PolyEPOTrainerSync)
    trainer.config, trainer.use_critic, trainer.trainer_mode = cfg, False, "sync"
    trainer.actor_rollout_wg = StandInActorWorkers()
    trainer.train_dataloader = StatefulDataLoader(list(range(16)), batch_size=2)
    trainer.checkpoint_callback = build_checkpoint_callback(cfg)
    trainer.answer_history = answer_history_for(cfg, VerlSettings.from_config(cfg.algorithm))
    return trainer


def test_the_history_is_in_verls_checkpoints_and_restored_on_resume(tmp_path):
    options = ["algorithm.adv_estimator=outcome_explore", "algorithm.polyepo.estimator_options={variant:historical}",
               f"trainer.default_local_dir={tmp_path}"]
    cfg = compose_config(*options)
    trainer = trainer_for(cfg)
    trainer.answer_history.record("q0", np.array([1, 1, 2]))
    trainer.answer_history.record("q1", np.array([3]))
    trainer.global_steps = 4
    trainer._save_checkpoint()  # verl's own, with the history written first
    folder = tmp_path / "global_step_4"
    assert AnswerHistory.load(folder / HISTORY_FILE) == trainer.answer_history
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "4" and (folder / "data.pt").is_file()

    for resume in ([], ["trainer.resume_mode=resume_path", f"trainer.resume_from_path={folder}"]):
        resumed = trainer_for(compose_config(*options, *resume))
        assert resumed.answer_history == AnswerHistory()  # what __init__ starts with
        resumed._load_checkpoint()  # verl's own: finds global_step_4, loads the actor and dataloader
        assert resumed.global_steps == 4 and resumed.actor_rollout_wg.loaded == "4"
        assert resumed.answer_history == trainer.answer_history

    (folder / HISTORY_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"holds no {HISTORY_FILE}"):
        trainer_for(cfg)._load_checkpoint()


def test_only_the_historical_variant_keeps_state(tmp_path):
    cases = [("outcome_explore", "{variant:historical}", True), ("outcome_explore", "{}", False),
             ("poly_epo", "{set_size:4}", False)]
    for k, (estimator, options, keeps) in enumerate(cases):
        cfg = compose_config(f"algorithm.adv_estimator={estimator}", f"algorithm.polyepo.estimator_options={options}",
                             f"trainer.default_local_dir={tmp_path / str(k)}")
        trainer = trainer_for(cfg)
        assert (trainer.answer_history is not None) == keeps
        trainer.global_steps = 2
        trainer._save_checkpoint()
        assert (tmp_path / str(k) / "global_step_2" / HISTORY_FILE).is_file() == keeps
        resumed = trainer_for(cfg)
        resumed._load_checkpoint()
        assert resumed.global_steps == 2
