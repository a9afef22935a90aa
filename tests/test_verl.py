"""polyepo inside verl 0.9, through verl's own code paths (CPU, no Ray).

Runs only where verl is installed: ``bash scripts/setup.sh verl`` then
``.venv-verl/bin/python -m pytest -q tests/test_verl.py``. In the main environment every
test here is skipped (verl pins transformers<5.11, which the TRL extra cannot share).
What these tests do not cover: a real verl training step (Ray workers, FSDP, vLLM), which
needs GPUs; see docs/verl.md for the recipes and what was run.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

verl = pytest.importorskip(
    "verl", reason="verl is not installed in this environment; it lives in .venv-verl (bash scripts/setup.sh verl)"
)
warnings.filterwarnings("ignore", category=UserWarning)

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories  # noqa: E402

import polyepo.train.verl as pv  # noqa: E402
from parity_cases import DR_GRPO_ADVANTAGES, DR_GRPO_METRICS, REWARDS, results, without_timing  # noqa: E402
from parity_cases import ESTIMATORS as PARITY_ESTIMATORS  # noqa: E402
from polyepo.advantages import ESTIMATORS, compute_advantages  # noqa: E402
from polyepo.groups import group_step  # noqa: E402
from polyepo.train.verl.estimators import estimator_columns  # noqa: E402
from polyepo.train.verl.groups import BatchRows, cluster_results, row_columns, session_finals  # noqa: E402
from polyepo.train.verl.settings import VerlSettings, defaults  # noqa: E402
from polyepo.train.verl.startup import check_startup  # noqa: E402
from verl_helpers import prefix_ids, registered  # noqa: E402

NAMES = pv.register()


def algo_config(**polyepo) -> OmegaConf:
    """An ``algorithm`` section as verl hands it to estimators (a DictConfig)."""
    return OmegaConf.create({"adv_estimator": "x", "norm_adv_by_std_in_grpo": True, "polyepo": polyepo})


def make_batch(rewards, uids, lengths, T=7, rejected=()) -> DataProto:
    """A DataProto as verl's advantage step builds it: outcome reward on the last response token;
    a ``rejected`` row keeps its reward and loses its response mask (rollout correction's rejection)."""
    B = len(rewards)
    mask = torch.zeros(B, T)
    scores = torch.zeros(B, T)
    for i, n in enumerate(lengths):
        mask[i, :n] = 0 if i in rejected else 1
        if n:
            scores[i, n - 1] = 0.0 if rewards[i] is None else float(rewards[i])
    return DataProto.from_dict(
        tensors={"token_level_rewards": scores, "response_mask": mask},
        non_tensors={"uid": np.array(uids, dtype=object)},
    )


def expected(adv: np.ndarray, lengths, T=7) -> np.ndarray:
    return np.array([[a if t < n else 0.0 for t in range(T)] for a, n in zip(adv, lengths)])


def test_names_and_verl_builtins_untouched():
    builtins = {e.value for e in core_algos.AdvantageEstimator}
    # polyepo names that verl has as built-ins get a prefix; the others keep their names
    assert NAMES == {n: (f"polyepo_{n}" if n in builtins else n) for n in ESTIMATORS.names()}
    assert NAMES["poly_epo"] == "poly_epo" and NAMES["grpo"] == "polyepo_grpo" and NAMES["rloo"] == "polyepo_rloo"
    assert core_algos.get_adv_estimator_fn("grpo") is core_algos.compute_grpo_outcome_advantage
    assert pv.register() == NAMES  # idempotent


@pytest.mark.parametrize(
    "name, options",
    [
        ("poly_epo", {"set_size": 4}),
        ("poly_epo", {"set_size": 3, "reduction": "mean", "min_distinct": 1, "degenerate": [100]}),
        ("grpo_div", {}),
        ("dr_grpo", {}),
        ("pass_at_k", {"set_size": 2}),
        ("pass_at_k", {"scale": "std", "reduction": "mean"}),
        ("grpo", {}),
        ("rloo", {}),
        ("set_rl", {"set_size": 3, "objective": "max_reward"}),
        ("pkpo", {}),
        ("pkpo", {"variant": "loo"}),
        ("darling", {}),
        ("darling", {"correct_only": True}),
        ("uniqueness", {}),
        ("outcome_explore", {}),
        ("reinforce_pp_baseline", {}),
    ],
)
def test_verl_compute_advantage_equals_pure_function(name, options):
    rng = np.random.default_rng(abs(hash((name, str(options)))) % 2**32)
    # 3 groups of 8, rows shuffled (verl balances rows across ranks before this step)
    uids = np.repeat(["p0", "p1", "p2"], 8)
    rewards = rng.integers(0, 2, 24).astype(float)
    clusters = rng.choice([1, 2, 3, 4, 100], 24)
    lengths = rng.integers(1, 8, 24)
    perm = rng.permutation(24)
    uids, rewards, clusters, lengths = uids[perm], rewards[perm], clusters[perm], lengths[perm]
    pure = compute_advantages(rewards, clusters, group_ids=uids, estimator=name, **options)
    cfg = algo_config(estimator_options=options)
    with estimator_columns(uids, {"cluster_id": clusters}):
        data = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator=NAMES[name], config=cfg)
        keys = [f"{u}_{i}_0" for i, u in enumerate(uids)]  # v1 keys: {uid}_{session}_{index}
        data_v1 = compute_advantage_for_multi_trajectories(
            make_batch(rewards, uids, lengths), batch_keys=keys, adv_estimator=NAMES[name], config=cfg
        )
    np.testing.assert_allclose(data.batch["advantages"].numpy(), expected(pure, lengths), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(data.batch["returns"].numpy(), expected(pure, lengths), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(data_v1.batch["advantages"].numpy(), expected(pure, lengths), rtol=1e-6, atol=1e-6)


def test_every_estimator_is_covered():
    tested = {name for name, _ in test_verl_compute_advantage_equals_pure_function.pytestmark[0].args[1]}
    assert tested == set(ESTIMATORS.names())  # the historical outcome_explore: tests/test_verl_history.py


def test_known_answer_and_padding_rows():
    # dr_grpo by hand: group a = [1, 0] -> [+0.5, -0.5]; group b = [1, 1, 0, 1] -> mean 0.75
    uids = ["a", "b", "a", "b", "b", "b", "pad", "pad"]
    rewards = [1, 1, 0, 1, 0, 1, 0, 0]
    lengths = [2, 3, 1, 1, 4, 2, 0, 0]  # verl's synthetic padding rows have no response token
    data = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator="dr_grpo", config=algo_config())
    adv = [0.5, 0.25, -0.5, 0.25, -0.75, 0.25, 0.0, 0.0]
    np.testing.assert_allclose(data.batch["advantages"].numpy(), expected(adv, lengths), atol=1e-7)
    # poly_epo with set_size 4 on a padding group of 2 would be an error; padding rows are left out
    with estimator_columns(uids, {"cluster_id": [1, 1, 2, 2, 3, 4, 100, 100]}):
        data = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator="poly_epo",
                                 config=algo_config(estimator_options={"set_size": 2}))
    pure_b = compute_advantages([1, 1, 0, 1], [1, 2, 3, 4], group_sizes=4, estimator="poly_epo", set_size=2)
    assert np.allclose(data.batch["advantages"].numpy()[[1, 3, 4, 5], 0], pure_b, atol=1e-6)
    assert np.all(data.batch["advantages"].numpy()[6:] == 0)


def test_poly_epo_without_cluster_ids_fails_loudly():
    data = make_batch([1, 0, 1, 0], ["a"] * 4, [1, 1, 1, 1])
    with pytest.raises(RuntimeError, match="trainer_mode=polyepo_sync"):
        compute_advantage(data, adv_estimator="poly_epo", config=algo_config())


def test_row_order_change_fails_loudly():
    data = make_batch([1, 0, 1, 0], ["a", "b", "a", "b"], [1, 1, 1, 1])
    with estimator_columns(["b", "a", "a", "b"], {"cluster_id": [1, 2, 3, 4]}):
        with pytest.raises(RuntimeError, match="not the batch polyepo prepared"):
            compute_advantage(data, adv_estimator="poly_epo", config=algo_config(estimator_options={"set_size": 2}))


def test_unknown_estimator_option_names_valid_ones():
    data = make_batch([1, 0, 1, 0], ["a"] * 4, [1, 1, 1, 1])
    with estimator_columns(["a"] * 4, {"cluster_id": [1, 2, 3, 4]}):
        with pytest.raises(ValueError, match="unknown option 'sett_size'.*valid options: set_size"):
            compute_advantage(data, adv_estimator="poly_epo", config=algo_config(estimator_options={"sett_size": 2}))


def test_what_verl_passes_to_custom_estimators():
    """Fails loudly if verl's compute_advantage changes what a custom estimator receives."""
    seen = {}

    @core_algos.register_adv_est("polyepo_test_probe")
    def probe(**kwargs):
        seen.update(kwargs)
        return kwargs["token_level_rewards"], kwargs["token_level_rewards"]

    compute_advantage(make_batch([1, 0], ["a", "a"], [1, 1]), adv_estimator="polyepo_test_probe", config=algo_config())
    assert set(seen) == {"token_level_rewards", "response_mask", "config", "index"}
    src = inspect.getsource(verl.trainer.ppo.v1.trainer_base.PPOTrainer._compute_advantage)
    for needle in ("tq.kv_batch_get(keys=batch.keys", "compute_advantage_for_multi_trajectories(", '"uid"'):
        assert needle in src, f"verl's PPOTrainer._compute_advantage no longer contains {needle!r}"


def test_trainer_registered_and_overrides_one_step():
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls

    cls = get_trainer_cls("polyepo_sync")
    assert issubclass(cls, PPOTrainerSync) and cls.__module__ == "polyepo.train.verl.trainer"
    overridden = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")}
    assert overridden == {"_compute_advantage", "_clusterer", "_watch_diversity", "_save_checkpoint", "_load_checkpoint"}
    for name in ("_compute_advantage", "_save_checkpoint", "_load_checkpoint"):
        assert name in vars(verl.trainer.ppo.v1.trainer_base.PPOTrainer)


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=pv.CONFIG_DIR, version_base=None):
        return compose(config_name=pv.CONFIG_NAME, overrides=list(overrides))


def test_config_composes_on_verl_and_matches_settings():
    cfg = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.estimator_options={set_size:4}")
    assert cfg.algorithm.adv_estimator == "poly_epo" and cfg.trainer.v1.trainer_mode == "polyepo_sync"
    assert cfg.actor_rollout_ref.rollout.n is not None  # verl's own keys are all there
    s = VerlSettings.from_config(cfg.algorithm)
    assert s.clusterer == "prefix" and s.estimator_options == {"set_size": 4}
    yaml_defaults = OmegaConf.to_container(compose_config().algorithm.polyepo)
    assert {k: ({} if v is None and isinstance(defaults()[k], dict) else v) for k, v in yaml_defaults.items()} == defaults()
    hook = cfg.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook
    module, fn = hook.rsplit(".", 1)
    assert getattr(__import__(module, fromlist=[fn]), fn) is pv.register


def tiny_tokenizer():
    """A word-level tokenizer built here (nothing from a hub)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[EOS]", "42", "41", "a1", "a2", "b1", "c1", "x", "y"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[PAD]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", eos_token="[EOS]")


def run_verl_reward(manager, tokenizer, response: str, answer: str) -> dict:
    """One rollout through verl's own reward manager (``run_single``, as its reward loop calls it)."""
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    prompt = torch.tensor([[1, 1]])
    resp = torch.tensor([ids])
    item = DataProto.from_dict(
        tensors={"prompts": prompt, "responses": resp, "attention_mask": torch.ones(1, 2 + len(ids), dtype=torch.long)},
        non_tensors={
            "data_source": np.array(["toy"], dtype=object),
            "reward_model": np.array([{"ground_truth": answer}], dtype=object),
            "extra_info": np.array([{"prompt": "6 * 7 = ?", "answer": answer}], dtype=object),
        },
    )
    return manager.loop.run_until_complete(manager.run_single(item))


GROUPS = {  # uid -> responses (8 rollouts each); the answer is 42
    "p0": ["42", "a1", "42", "a2", "b1", "42", "x", "42"],
    "p1": ["41", "42", "c1", "42", "y", "x", "42", "41"],
}


def _group_rows(cfg, rows_order):
    from verl.trainer.ppo.reward import load_reward_manager

    tokenizer = tiny_tokenizer()
    manager = load_reward_manager(cfg, tokenizer)  # verl resolves custom_reward_function here
    uids, responses, extras = [], [], []
    for uid, i in rows_order:
        out = run_verl_reward(manager, tokenizer, GROUPS[uid][i], "42")
        uids.append(uid)
        responses.append(GROUPS[uid][i])
        extras.append(out["reward_extra_info"])
    rewards = np.array([e["score"] for e in extras])
    return BatchRows(uids, ["6 * 7 = ?"] * len(uids), responses, rewards, extras)


def test_reward_extras_and_clusters_reach_the_estimator():
    """verl's reward manager runs our compute_score; its extras, the per-group clusters and the
    rewards reach the estimator through verl's compute_advantage."""
    with registered():
        cfg = compose_config("reward.custom_reward_function.reward_kwargs.reward=exact_answer",
                             "algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.estimator_options={set_size:4}")
        order = [(u, i) for i in range(8) for u in ("p0", "p1")]  # interleaved groups
        rows = _group_rows(cfg, order)
        assert rows.extras[0] == {"score": 1.0, "reward_none": 0}
        settings = VerlSettings.from_config(cfg.algorithm)
        from polyepo.clustering import make_clusterer

        found, _ = cluster_results(rows, settings, make_clusterer("prefix"))
        data = make_batch(rows.rewards, rows.uids, [3] * 16)
        with estimator_columns(rows.uids, row_columns(rows), found) as step:
            out = compute_advantage(data, adv_estimator="poly_epo", config=cfg.algorithm)
    got = out.batch["advantages"].numpy()[:, 0]
    for uid, responses in GROUPS.items():
        r = np.array([float(x == "42") for x in responses])
        want = compute_advantages(r, prefix_ids(responses), group_sizes=8, estimator="poly_epo", set_size=4)
        rows_of = [k for k, (u, _) in enumerate(order) if u == uid]
        np.testing.assert_allclose(got[rows_of], want, rtol=1e-6, atol=1e-6)
    assert step.metrics["polyepo/groups"] == 2 and step.metrics["polyepo/groups_clustered"] == 2


def test_cluster_ids_returned_by_a_reward_function_reach_the_estimator(tmp_path):
    """A user's verl reward file that adds ``cluster_id`` to our extras (cluster_extra_key)."""
    user = tmp_path / "user_reward.py"
    user.write_text(
        "from polyepo.train.verl.reward import compute_score as polyepo_score\n"
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kw):\n"
        "    out = polyepo_score(data_source, solution_str, ground_truth, extra_info, **kw)\n"
        "    out['cluster_id'] = 100 if not solution_str.strip() else 1 + ord(solution_str.strip()[0]) % 7\n"
        "    return out\n"
    )
    with registered():
        cfg = compose_config(f"reward.custom_reward_function.path={user}",
                             "reward.custom_reward_function.reward_kwargs.reward=exact_answer",
                             "algorithm.polyepo.cluster_extra_key=cluster_id",
                             "algorithm.polyepo.estimator_options={set_size:3,reduction:mean}")
        rows = _group_rows(cfg, [("p1", i) for i in range(8)])
    found, _ = cluster_results(rows, VerlSettings.from_config(cfg.algorithm))
    ids = [1 + ord(x[0]) % 7 for x in GROUPS["p1"]]
    assert found["p1"].ids == ids
    with estimator_columns(rows.uids, row_columns(rows), found):
        out = compute_advantage(make_batch(rows.rewards, rows.uids, [2] * 8), adv_estimator="poly_epo", config=cfg.algorithm)
    r = np.array([float(x == "42") for x in GROUPS["p1"]])
    want = compute_advantages(r, ids, group_sizes=8, estimator="poly_epo", set_size=3, reduction="mean")
    np.testing.assert_allclose(out.batch["advantages"].numpy()[:, 0], want, rtol=1e-6, atol=1e-7)


def test_rows_from_transfer_queue_fields():
    """The grouping step's reader on fields laid out as verl writes them to TransferQueue."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from polyepo.train.verl.trainer import rows_from_fields

    tok = tiny_tokenizer()
    fields = []
    for uid, text, r in [("u", "42", 1.0), ("u", "a1 b1", 0.0), ("pad", "x", 0.0)]:
        ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
        score = torch.zeros(len(ids))
        score[-1] = r
        fields.append({"uid": uid, "raw_prompt": [{"role": "user", "content": "q?"}], "responses": ids,
                       "rm_scores": score, "extra_fields": {"reward_extra_info": {"score": r, "reward_none": 0}}})
    rows = rows_from_fields(list_of_dict_to_tensordict(fields), tok, np.array([True, True, False]))
    assert rows.uids == ["u", "u"] and rows.responses == ["42", "a1 b1"] and rows.prompts == ["q?", "q?"]
    assert rows.rewards.tolist() == [1.0, 0.0] and rows.extras[1] == {"score": 0.0, "reward_none": 0}


def agent_loop_rows(order, tok, uids_pad=("pad",)):
    """TransferQueue rows as verl's agent loop writes them (``{uid}_{session}_0`` keys, tags),
    with the fields the advantage step reads; ``order``: (uid, session) pairs."""
    fields, keys, tags = [], [], []
    for uid, i in order:
        text = "x" if uid in uids_pad else GROUPS[uid][i]
        ids = torch.tensor(tok(text, add_special_tokens=False)["input_ids"])
        r = 0.0 if uid in uids_pad else float(text == "42")
        score = torch.zeros(len(ids))
        score[-1] = r
        mask = torch.zeros(len(ids), dtype=torch.long) if uid in uids_pad else torch.ones(len(ids), dtype=torch.long)
        zeros = torch.zeros(len(ids))
        fields.append({
            "uid": uid, "raw_prompt": [{"role": "user", "content": "6 * 7 = ?"}], "responses": ids,
            "response_mask": mask, "rm_scores": score, "rollout_log_probs": zeros, "old_log_probs": zeros,
            "ref_log_prob": zeros, "values": zeros, "extra_info": {"index": 0, "problem_id": f"problem-{uid}"},
            "extra_fields": {"reward_extra_info": {"score": r, "reward_none": 0}},
        })
        keys.append(f"{uid}_{i}_0")
        tags.append({"status": "success", "is_padding": uid in uids_pad, "global_steps": 1, "seq_len": len(ids) + 2})
    return fields, keys, tags


def expected_advantages(adv, order):
    for uid, responses in GROUPS.items():
        r = np.array([float(x == "42") for x in responses])
        want = compute_advantages(r, prefix_ids(responses), group_sizes=8, estimator="poly_epo", set_size=4)
        got = [adv[k] for k, (u, i) in enumerate(order) if u == uid]
        np.testing.assert_allclose(got, want[[i for u, i in order if u == uid]], rtol=1e-5, atol=1e-6)


def with_real_transfer_queue(fn):
    """Run ``fn`` with a local Ray and TransferQueue (opt-in: POLYEPO_VERL_RAY=1)."""
    import ray
    import transfer_queue as tq

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)  # TQ: 1 controller + 2 storage units
    try:
        tq.init()
        return fn(tq)
    finally:
        tq.close()
        ray.shutdown()


real_tq = pytest.mark.skipif(__import__("os").environ.get("POLYEPO_VERL_RAY") != "1",
                             reason="starts a local Ray + TransferQueue (~30 s); opt in with POLYEPO_VERL_RAY=1")


@pytest.mark.slow
@real_tq
def test_polyepo_sync_advantage_step_on_a_real_transfer_queue():
    """verl's real ``_compute_advantage`` (TransferQueue reads and writes, KL/rollout-correction
    branches) with polyepo's step in front, on rows laid out as verl's agent loop writes them;
    then the historical outcome_explore, keyed by the rows' ``extra_info`` problem ids."""
    from transfer_queue import KVBatchMeta
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    from polyepo.advantages import AnswerHistory
    from polyepo.train.verl.trainer import PolyEPOTrainerSync, answer_history_for

    tok = tiny_tokenizer()
    order = [(u, i) for i in range(8) for u in ("p0", "p1")] + [("pad", 0), ("pad", 1)]
    fields, keys, tags = agent_loop_rows(order, tok)
    with registered():
        cfg = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.estimator_options={set_size:4}",
                             "actor_rollout_ref.rollout.n=8")

        def step(tq):
            tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)

            def advantages(cfg):
                trainer = object.__new__(PolyEPOTrainerSync)  # the step under test needs no workers
                trainer.config, trainer.tokenizer, trainer._polyepo_clusterer = cfg, tok, None
                trainer.answer_history = answer_history_for(cfg, check_startup(cfg))
                metrics: dict = {}
                for _ in range(2):  # two steps over the same rows: the historical counts carry over
                    trainer._compute_advantage(KVBatchMeta(keys=keys, tags=tags, partition_id="train"), metrics)
                out = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])
                return [float(a[0]) if a.numel() else 0.0 for a in out["advantages"].unbind()], metrics, trainer

            adv, metrics, _ = advantages(cfg)
            hist_cfg = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.adv_estimator=outcome_explore",
                                      "algorithm.polyepo.estimator_options={variant:historical,coef:1.0}")
            hist_adv, _, hist_trainer = advantages(hist_cfg)
            return adv, metrics, hist_adv, hist_trainer

        adv, metrics, hist_adv, hist_trainer = with_real_transfer_queue(step)
    expected_advantages(adv, order)
    assert adv[-2:] == [0.0, 0.0]
    assert metrics["polyepo/groups"] == 2 and "polyepo/clusters_distinct_correct" in metrics
    reference = AnswerHistory()
    for uid, responses in GROUPS.items():
        r = np.array([float(x == "42") for x in responses])
        for _ in range(2):
            want = compute_advantages(r, prefix_ids(responses), group_sizes=8, estimator="outcome_explore",
                                      prompt_keys=[f"problem-{uid}"] * 8, history=reference, variant="historical", coef=1.0)
        np.testing.assert_allclose([hist_adv[k] for k, (u, _) in enumerate(order) if u == uid], want, rtol=1e-5, atol=1e-6)
    assert hist_trainer.answer_history == reference and hist_trainer.answer_history.groups == 4


def early_trainer(cfg, tok):
    """A polyepo_sync trainer holding verl's own sync replay buffer (built by verl's
    ``_build_replay_buffer``) with the early clustering installed; no workers."""
    from types import SimpleNamespace

    from polyepo.train.verl.trainer import PolyEPOTrainerSync, install_early_clustering

    trainer = object.__new__(PolyEPOTrainerSync)
    trainer.config, trainer.tokenizer, trainer._polyepo_clusterer = cfg, tok, None
    trainer.trainer_mode = "sync"
    trainer.answer_history = None
    trainer.replay_buffer = trainer._build_replay_buffer()  # verl's code
    settings = check_startup(cfg)
    trainer._polyepo_early = install_early_clustering(trainer, settings, trainer._clusterer(settings))
    # rewards scored during sampling, by verl's reward loop workers (their handles are all that is read)
    trainer.reward_loop_manager = SimpleNamespace(reward_loop_worker_handles=["reward loop worker"])
    return trainer


def test_early_clustering_hooks_onto_verls_replay_buffer(monkeypatch):
    """verl's sync ReplayBuffer polls TransferQueue through _sync_metadata_from_transfer_queue; after
    each poll the groups verl's agent loop marked finished start clustering (verl's own parsing of
    TransferQueue's listing, from a listing in its format)."""
    import transfer_queue as tq
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    assert "self._sync_metadata_from_transfer_queue()" in inspect.getsource(ReplayBuffer.sample)
    tok = tiny_tokenizer()
    order = [(u, i) for u in ("p0", "p1") for i in range(8)]
    fields, keys, tags = agent_loop_rows(order, tok)
    store = dict(zip(keys, fields))
    listing = {"train": {"p0": {"is_prompt": True, "status": "finished", "global_steps": 1},
                         "p1": {"is_prompt": True, "status": "running", "global_steps": 1},
                         **{k: t for k, t in zip(keys, tags)}}}
    reads = []
    monkeypatch.setattr(tq, "kv_list", lambda partition_id=None: listing)
    monkeypatch.setattr(tq, "kv_batch_get", lambda keys, partition_id, select_fields: reads.append(keys)
                        or list_of_dict_to_tensordict([{f: store[k][f] for f in select_fields} for k in keys]))
    with registered():
        cfg = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.estimator_options={set_size:4}",
                             "actor_rollout_ref.rollout.n=8")
        trainer = early_trainer(cfg, tok)
        assert type(trainer.replay_buffer) is ReplayBuffer and trainer._polyepo_early is not None
        trainer.replay_buffer._sync_metadata_from_transfer_queue()
        assert reads == [[k for k in keys if k.startswith("p0_")]]  # p0 finished: read and started; p1 not yet
        listing["train"]["p1"]["status"] = "finished"
        trainer.replay_buffer._sync_metadata_from_transfer_queue()
        assert len(reads) == 2 and trainer._polyepo_early.started == 2
        off = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.overlap_clustering=false")
        assert early_trainer(off, tok)._polyepo_early is None
        dapo = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.filter_groups.enable=true",
                              "algorithm.filter_groups.metric=acc")
        assert early_trainer(dapo, tok)._polyepo_early is None  # its evicted groups would be judged for nothing


@pytest.mark.slow
@real_tq
def test_groups_are_clustered_while_sampling_on_a_real_transfer_queue():
    """verl's replay buffer samples a batch from a real TransferQueue while the groups finish one
    by one; each group starts clustering at the poll after it finished, and the advantage step
    (verl's, with rows reordered as its balancing does) only takes the results."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    tok = tiny_tokenizer()
    order = [(u, i) for u in ("p0", "p1") for i in range(8)]
    fields, keys, tags = agent_loop_rows(order, tok)
    with registered():
        cfg = compose_config("algorithm.polyepo.clusterer=prefix", "algorithm.polyepo.estimator_options={set_size:4}",
                             "actor_rollout_ref.rollout.n=8")

        def run(tq):
            trainer = early_trainer(cfg, tok)
            clusterer = trainer._polyepo_clusterer[1]
            prompt = {"is_prompt": True, "status": "running", "global_steps": 1}
            tq.kv_batch_put(keys=["p0", "p1"], partition_id="train", tags=[dict(prompt), dict(prompt)])
            for uid in ("p0", "p1"):  # as the agent loop: a group's rows, then its prompt marked finished
                rows = [k for k, (u, _) in enumerate(order) if u == uid]
                tq.kv_batch_put(keys=[keys[k] for k in rows], partition_id="train",
                                fields=list_of_dict_to_tensordict([fields[k] for k in rows]), tags=[tags[k] for k in rows])
                tq.kv_put(key=uid, partition_id="train", tag={"status": "finished"})
                trainer.replay_buffer._sync_metadata_from_transfer_queue()  # one poll of the sampling loop
            batch, _ = trainer.replay_buffer.sample(global_steps=1, partition_id="train", batch_size=2)
            batch.reorder(list(range(len(batch.keys)))[::-1])  # as verl's balancing reorders rows
            calls_before = clusterer.calls
            metrics: dict = {}
            trainer._compute_advantage(batch, metrics)
            out = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages"])
            adv = dict(zip(batch.keys, [float(a[0]) for a in out["advantages"].unbind()]))
            return adv, metrics, calls_before, clusterer.calls, trainer._polyepo_early.started

        adv, metrics, before, after, started = with_real_transfer_queue(run)
    assert started == 2 and before == after == 2  # clustered while sampling; the advantage step clustered nothing
    expected_advantages([adv[k] for k in keys], order)
    assert metrics["polyepo/groups"] == 2 and metrics["polyepo/time_cluster_wait_s"] < 1.0


def recipe_config(script: str, **env: str):
    """The config a recipe would launch (its overrides, composed on verl's config)."""
    import os
    import subprocess
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "verl" / script
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PRINT_OVERRIDES": "1", **env})
    cfg = compose_config(*out.stdout.splitlines())
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    # what verl's main_ppo checks before starting Ray; a critic-free, reference-free run
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    assert not need_critic(cfg) and not need_reference_policy(cfg)
    return cfg


@pytest.mark.parametrize("estimator", ["poly_epo", "dr_grpo"])
def test_seed002_recipe_composes_with_seed_hyperparameters(estimator):
    cfg = recipe_config("seed002_leetcode.sh", ESTIMATOR=estimator)
    a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert cfg.algorithm.adv_estimator == estimator and cfg.trainer.v1.trainer_mode == "polyepo_sync"
    assert (cfg.data.train_batch_size, r.n, r.temperature, a.optim.lr, cfg.trainer.total_training_steps) == (32, 8, 1.0, 1e-6, 250)
    assert a.ppo_mini_batch_size == 32 and not a.use_kl_loss and not cfg.algorithm.use_kl_in_reward  # on-policy, no KL
    assert a.loss_agg_mode == "seq-mean-token-sum-norm" and a.loss_scale_factor == cfg.data.max_response_length
    s = VerlSettings.from_config(cfg.algorithm)
    assert s.estimator_options == {"set_size": 4} and s.clusterer == "judge"  # same clustering in both runs
    assert s.clusterer_options["on_failure"] == "wait" and s.clusterer_options["on_group_failure"] == "fallback:python_ast"
    assert s.clusterer_options["max_wait_s"] == 7200 and s.overlap_clustering
    assert cfg.reward.custom_reward_function.reward_kwargs.reward == "code_tests"


@pytest.mark.parametrize("estimator", ["poly_epo", "dr_grpo", "grpo_div"])
def test_paper_math_recipe_composes_with_paper_hyperparameters(estimator):
    cfg = recipe_config("paper_math.sh", ESTIMATOR=estimator)
    a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert (cfg.data.train_batch_size, r.n, r.temperature, a.optim.lr, cfg.trainer.total_training_steps) == (128, 8, 1.0, 1e-6, 850)
    assert (a.clip_ratio_low, a.clip_ratio_high, cfg.trainer.n_gpus_per_node) == (0.2, 0.28, 4)
    assert a.loss_agg_mode == "seq-mean-token-sum-norm" and not a.use_kl_loss
    opts = VerlSettings.from_config(cfg.algorithm).estimator_options
    if estimator == "poly_epo":  # the paper authors' released variant
        assert opts == {"set_size": 4, "reduction": "mean", "min_distinct": 1, "degenerate": [100]}
    r, c = [1, 1, 0, 1, 0, 0, 1, 1], [1, 1, 2, 3, 100, 4, 5, 5]
    compute_advantages(r, c, group_sizes=8, estimator=estimator, **opts)  # options valid for the estimator


def test_data_command_writes_parquet_that_verl_loads(tmp_path):
    """Task rows -> parquet (with the pass-rate filter) -> verl's RLHFDataset -> our reward."""
    import json

    from verl.utils.dataset.rl_dataset import RLHFDataset

    from polyepo.train.verl.data import main as data_main
    from polyepo.train.verl.reward import compute_score

    src, counts, out = tmp_path / "rows.jsonl", tmp_path / "pass.jsonl", tmp_path / "train.parquet"
    src.write_text("".join(json.dumps({"problem_id": f"q{i}", "prompt": f"{i} + {i} = ?", "answer": str(2 * i)}) + "\n"
                           for i in range(4)))
    counts.write_text("".join(json.dumps({"problem_id": f"q{i}", "passed": p}) + "\n" for i, p in enumerate([0, 3, 16, 12])))
    data_main(["--jsonl", str(src), "--out", str(out), "--pass-counts", str(counts), "--ability", "math"])
    cfg = compose_config("data.filter_overlong_prompts=false")
    ds = RLHFDataset(str(out), tiny_tokenizer(), cfg.data)
    assert len(ds) == 2  # q1 (3 of 16) and q3 (12 of 16) are in the 1..12 band
    item = ds[1]
    assert item["raw_prompt"] == [{"role": "user", "content": "3 + 3 = ?"}] and item["data_source"] == "rows"
    with registered():
        assert compute_score(item["data_source"], "6", item["reward_model"]["ground_truth"], item["extra_info"],
                             reward="exact_answer") == {"score": 1.0, "reward_none": 0}


def test_entry_point_runs_verls_main_on_polyepo_config():
    """``python -m polyepo.train.verl`` = verl's Hydra main + our config (``--cfg job`` prints, runs nothing)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "polyepo.train.verl", "--cfg", "job", "algorithm.polyepo.clusterer=prefix"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cfg = OmegaConf.create(out.stdout)
    assert cfg.algorithm.polyepo.clusterer == "prefix" and cfg.trainer.v1.trainer_mode == "polyepo_sync"
    assert cfg.ray_kwargs.ray_init.runtime_env.worker_process_setup_hook == "polyepo.train.verl.register"
    bad = subprocess.run([sys.executable, "-m", "polyepo.train.verl", "--config-name", "x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "use verl's main_ppo" in bad.stderr


# --- the group step through verl's own advantage code: parity, and verl's grpo where it defines the case ---


def _parity_batch(rng):
    uids = np.array([f"u{i // 4}" for i in range(len(REWARDS))], dtype=object)
    perm = rng.permutation(len(REWARDS))
    found = {}
    for k, res in enumerate(results()):  # ids in the order the group's rows appear in verl's batch
        res.ids = [res.ids[i % 4] for i in perm if i // 4 == k]
        found[f"u{k}"] = res
    rewards = [REWARDS[i] for i in perm]
    return perm, uids, list(uids[perm]), rewards, found


@pytest.mark.parametrize("name, options", PARITY_ESTIMATORS)
def test_parity_batch_through_verls_compute_advantage(name, options):
    """The parity batch (None rewards, short, singleton and judge-failed groups) through verl's
    compute_advantage and its v1 multi-trajectory path: the group step's advantages and metrics."""
    rng = np.random.default_rng(11)
    perm, uids, shuffled, rewards, found = _parity_batch(rng)
    lengths = rng.integers(1, 8, len(rewards))
    cfg = algo_config(estimator_options=options)
    columns = {"unscorable": [r is None for r in rewards]}
    want = group_step(REWARDS, list(uids), results(), estimator=name, estimator_options=options)
    for path in ("v0", "v1"):
        with estimator_columns(shuffled, columns, found) as step:
            if path == "v0":
                data = compute_advantage(make_batch(rewards, shuffled, lengths), adv_estimator=NAMES[name], config=cfg)
            else:
                keys = [f"{u}_{i}_0" for i, u in enumerate(shuffled)]
                data = compute_advantage_for_multi_trajectories(make_batch(rewards, shuffled, lengths), batch_keys=keys,
                                                                adv_estimator=NAMES[name], config=cfg)
        np.testing.assert_allclose(data.batch["advantages"].numpy(), expected(want.advantages[perm], lengths),
                                   rtol=1e-6, atol=1e-6)
        assert without_timing(step.metrics) == pytest.approx(without_timing(want.metrics), abs=1e-12)
    if name == "dr_grpo":
        np.testing.assert_allclose(data.batch["advantages"].numpy()[:, 0], np.array(DR_GRPO_ADVANTAGES)[perm], atol=1e-7)
        assert without_timing(step.metrics) == pytest.approx(DR_GRPO_METRICS, abs=1e-12)


def verl_grpo(data: DataProto, keys=None) -> np.ndarray:
    """verl's own grpo with norm_adv_by_std_in_grpo=False (its Dr.GRPO)."""
    cfg = OmegaConf.create({"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": False})
    if keys is None:
        out = compute_advantage(data, adv_estimator="grpo", norm_adv_by_std_in_grpo=False, config=cfg)
    else:
        out = compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator="grpo",
                                                       norm_adv_by_std_in_grpo=False, config=cfg)
    return out.batch["advantages"].numpy()


def test_dr_grpo_equals_verls_grpo_on_short_rejected_and_padding_groups():
    """Groups of unequal sizes (a short one of 3), rows in any order, a row rejected by rollout
    correction (no response token, its reward still in the baseline) and verl's padding rows."""
    rng = np.random.default_rng(3)
    uids = ["a"] * 4 + ["b"] * 3 + ["c"] * 5 + ["pad0"] * 2
    rewards = list(rng.integers(0, 2, 12).astype(float)) + [0.0, 0.0]
    lengths = list(rng.integers(1, 7, 12)) + [0, 0]
    perm = rng.permutation(len(uids))
    uids, rewards, lengths = [uids[i] for i in perm], [rewards[i] for i in perm], [lengths[i] for i in perm]
    rejected = {int(np.flatnonzero(np.array(uids) == "c")[1]), int(np.flatnonzero(np.array(uids) == "a")[0])}
    ours = compute_advantage(make_batch(rewards, uids, lengths, rejected=rejected), adv_estimator="dr_grpo",
                             config=algo_config()).batch["advantages"].numpy()
    np.testing.assert_allclose(ours, verl_grpo(make_batch(rewards, uids, lengths, rejected=rejected)), atol=1e-6)
    assert np.any(ours != 0)


def test_dr_grpo_equals_verls_grpo_on_multi_output_agent_sessions():
    """verl's v1 path lets only each session's final output into the group and broadcasts its
    advantage to the session's other outputs; polyepo's step does the same."""
    keys = ["a_0_0", "a_0_1", "a_0_2", "a_1_0", "a_2_0", "a_2_1", "b_0_0", "b_1_0", "b_1_1"]
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(keys))
    keys = [keys[i] for i in perm]
    uids = [k.split("_")[0] for k in keys]
    # verl's agent loop gives a session's outputs its final output's reward
    per_session = {"a_0": 1.0, "a_1": 0.0, "a_2": 0.0, "b_0": 1.0, "b_1": 0.0}
    rewards = [per_session[k.rsplit("_", 1)[0]] for k in keys]
    lengths = rng.integers(1, 7, len(keys))
    sessions, final = session_finals(keys, len(keys))
    want = verl_grpo(make_batch(rewards, uids, lengths), keys)
    with estimator_columns(uids, {"session": sessions, "session_final": final}):
        ours = compute_advantage_for_multi_trajectories(make_batch(rewards, uids, lengths), batch_keys=keys,
                                                        adv_estimator="dr_grpo", config=algo_config())
    np.testing.assert_allclose(ours.batch["advantages"].numpy(), want, atol=1e-6)
    a0 = keys.index("a_0_0")  # group a's finals [1, 0, 0]: +2/3 for session a_0 (every row with its mask)
    assert ours.batch["advantages"].numpy()[a0, 0] == pytest.approx(2 / 3)


def test_singletons_follow_verls_grpo_with_singletons_reward():
    """verl's grpo gives a group of one a baseline of 0 (advantage = reward); polyepo gives 0 by
    default (nothing to compare with) and verl's value with singletons=reward."""
    uids, rewards, lengths = ["a", "b", "b", "c"], [1.0, 1.0, 0.0, 0.5], [2, 3, 1, 4]
    want = verl_grpo(make_batch(rewards, uids, lengths))
    ours = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator="dr_grpo",
                             config=algo_config(singletons="reward")).batch["advantages"].numpy()
    np.testing.assert_allclose(ours, want, atol=1e-7)
    default = compute_advantage(make_batch(rewards, uids, lengths), adv_estimator="dr_grpo",
                                config=algo_config()).batch["advantages"].numpy()
    assert default[0].sum() == 0 and default[3].sum() == 0 and np.allclose(default[1:3], want[1:3])


def test_verl_version_is_checked_at_start(monkeypatch):
    assert pv.check_verl_version() == verl.__version__
    with pytest.raises(RuntimeError, match="tested with verl >=0.9.1,<0.10 .*this is verl 0.10.0.*POLYEPO_VERL_ANY_VERSION"):
        pv.check_verl_version("0.10.0")
    monkeypatch.setenv(pv.ANY_VERSION_ENV, "1")
    with pytest.warns(RuntimeWarning, match="this is verl 0.8.2"):
        pv.check_verl_version("0.8.2")


def test_startup_check_on_the_composed_config():
    cfg = compose_config("algorithm.polyepo.estimator_options={set_size:16}", "actor_rollout_ref.rollout.n=8")
    with pytest.raises(ValueError, match="set_size=16 exceeds actor_rollout_ref.rollout.n=8"):
        check_startup(cfg)
    cfg = compose_config("reward.custom_reward_function.reward_kwargs.reward=math_answer",
                         "reward.custom_reward_function.reward_kwargs.reward_options={timout_s:1}")
    with pytest.raises(ValueError, match="unknown option 'timout_s'"):
        check_startup(cfg)
    cfg = compose_config("reward.custom_reward_function.reward_kwargs.reward=math_answer",
                         "algorithm.polyepo.unscorable=zero", "actor_rollout_ref.rollout.n=8")
    assert check_startup(cfg).unscorable == "zero"


def test_degenerate_diversity_warns_once_on_verl(caplog):
    """The TRL trainer's degenerate-diversity watch on verl's advantage step: groups all apart
    for a window of steps give one warning (logged, and a metric at that step), never a second;
    groups with a stand-in for failed clustering are left out."""
    import logging

    from polyepo.clustering.base import ClusterResult
    from polyepo.train.verl.trainer import PolyEPOTrainerSync

    with registered():
        cfg = compose_config("algorithm.polyepo.clusterer=prefix", "actor_rollout_ref.rollout.n=8")
        settings = check_startup(cfg)
    trainer = object.__new__(PolyEPOTrainerSync)
    apart = {uid: ClusterResult(ids=list(range(1, 9)), backend="prefix") for uid in ("p0", "p1")}  # as cluster_results
    stand_in = {uid: ClusterResult(ids=[0] * 8, backend="judge", failed=True, policy="zero_diversity") for uid in ("p0", "p1")}
    fired = []
    with caplog.at_level(logging.WARNING, logger="polyepo.train.verl"):
        for step in range(1, 9):
            trainer.global_steps = step
            metrics: dict = {}
            trainer._watch_diversity(settings, stand_in if step <= 4 else apart, metrics)
            fired.append(metrics.get("polyepo/warning_degenerate_diversity"))
    assert fired == [None] * 7 + [1.0]  # stand-ins are not judged: the window fills at step 8
    warnings_ = [r.getMessage() for r in caplog.records if "warning:" in r.getMessage()]
    assert len(warnings_) == 1 and "prefix" in warnings_[0] and "steps 5-8" in warnings_[0]
