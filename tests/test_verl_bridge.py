"""The verl bridge's verl-free parts: settings, per-group clustering, the reward adapter.

These run in the main environment (no verl). The parts that need verl itself are in
tests/test_verl.py, which runs in .venv-verl.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from parity_cases import DR_GRPO_ADVANTAGES, ESTIMATORS, REWARDS, results, without_timing
from polyepo.clustering import DEGENERATE
from polyepo.clustering.base import prompt_text
from polyepo.groups import group_step
from polyepo.train.verl.groups import (
    BatchRows,
    cluster_results,
    ids_from_extras,
    row_columns,
    scatter_columns,
    session_finals,
)
from polyepo.train.verl.reward import compute_score
from polyepo.train.verl.settings import VerlSettings, defaults
from polyepo.train.verl.startup import check_startup
from verl_helpers import BrokenClusterer, PrefixClusterer, prefix_ids, registered


def test_import_does_not_load_verl_or_torch():
    code = (
        "import sys, polyepo.train.verl, polyepo.train.verl.groups, polyepo.train.verl.reward, "
        "polyepo.train.verl.settings, polyepo.train.verl.estimators, polyepo.train.verl.startup\n"
        "print(','.join(m for m in ('verl', 'torch', 'ray', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_settings_validation_names_the_key():
    s = VerlSettings.from_config({"polyepo": {"clusterer": "prefix", "estimator_options": {"set_size": 2}}})
    assert s.cluster_source == "clusterer" and s.estimator_options == {"set_size": 2}
    assert VerlSettings.from_config({}).cluster_source == "none"
    assert VerlSettings.from_config({"polyepo": {"estimator_options": None}}).estimator_options == {}
    with pytest.raises(ValueError, match=r"unknown key 'clusterr' \(did you mean 'clusterer'\?\) for algorithm.polyepo; "
                                         "valid keys: unscorable, singletons"):
        VerlSettings.from_mapping({"clusterr": "x"})
    with pytest.raises(ValueError, match="algorithm.polyepo.unscorable must be one of drop, zero, raise"):
        VerlSettings.from_mapping({"unscorable": "skip"})
    with pytest.raises(ValueError, match="OR cluster_extra_key"):
        VerlSettings.from_mapping({"clusterer": "x", "cluster_extra_key": "cluster_id"})
    with pytest.raises(ValueError, match="cluster_workers"):
        VerlSettings.from_mapping({"cluster_workers": 0})
    with pytest.raises(ValueError, match="max_failed_group_fraction"):
        VerlSettings.from_mapping({"max_failed_group_fraction": 1.5})
    assert defaults()["cluster_workers"] == 8 and defaults()["estimator_options"] == {}
    assert (defaults()["unscorable"], defaults()["singletons"], defaults()["correct_threshold"]) == ("drop", "zero", 1.0)


def test_prompt_text_and_sessions():
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Add 2 and 3."}]
    assert prompt_text(chat) == "Add 2 and 3."
    assert prompt_text(np.array(chat, dtype=object)) == "Add 2 and 3."
    assert prompt_text("plain") == "plain"
    with pytest.raises(ValueError, match="prompt must be a string or a list of chat messages, got int"):
        prompt_text(3)
    # verl's keys {uid}_{session}_{index}: the highest index of a session is its final output
    sessions, final = session_finals(["u_0_0", "u_1_0", "u_0_2", "u_0_1", "v_0_0"], 5)
    assert sessions == ["u_0", "u_1", "u_0", "u_0", "v_0"] and final.tolist() == [False, True, True, False, True]
    assert session_finals(None, 3)[1].tolist() == [True] * 3


def _rows(uids, responses, rewards, extras=None, keys=None) -> BatchRows:
    return BatchRows(
        uids=uids, prompts=[f"prompt of {u}" for u in uids], responses=responses,
        rewards=np.asarray(rewards, dtype=float), extras=extras or [{} for _ in uids], keys=keys,
    )


def test_clustering_runs_once_per_whole_group_in_any_row_order():
    # two groups interleaved, as after verl's balancing across data-parallel ranks
    uids = ["g1", "g2", "g1", "g2", "g1", "g2", "g1", "g2"]
    responses = ["a1", "x", "b2", "x", "a3", "", "c4", "y"]
    rewards = [1, 0, 1, 0, 0, 0, 1, 1]
    extras = [{"score": float(r), "reward_none": 0} for r in rewards]
    clusterer = PrefixClusterer()
    found, seconds = cluster_results(_rows(uids, responses, rewards, extras), VerlSettings(clusterer="prefix"), clusterer)
    # group g1 = rows 0,2,4,6 -> a,b,a,c -> 1,2,1,3 ; group g2 = rows 1,3,5,7 -> x,x,'',y -> 1,1,100,2
    assert {u: r.ids for u, r in found.items()} == {"g1": [1, 2, 1, 3], "g2": [1, 1, DEGENERATE, 2]}
    assert clusterer.calls == 2 and seconds >= 0
    assert clusterer.seen_context_keys == ("reward_none", "rewards", "score")


def test_only_final_outputs_of_agent_sessions_are_clustered():
    keys = ["g_0_0", "g_0_1", "g_1_0", "g_2_0"]  # session 0 has two outputs; its final one is row 1
    rows = _rows(["g"] * 4, ["a-early", "b-final", "c", "d"], [1, 1, 0, 1], keys=keys)
    found, _ = cluster_results(rows, VerlSettings(clusterer="prefix"), PrefixClusterer())
    assert found["g"].ids == [1, 2, 3]  # b, c, d: three sessions
    cols = row_columns(rows)
    assert cols["session"].tolist() == ["g_0", "g_0", "g_1", "g_2"]
    assert cols["session_final"].tolist() == [False, True, True, True]


def test_unscorable_rows_and_none_reward():
    rows = _rows(["g", "g"], ["a", "b"], [0.0, 1.0], [{"score": 0.0, "reward_none": 1}, {"score": 1.0, "reward_none": 0}])
    assert row_columns(rows)["unscorable"].tolist() == [True, False]
    assert row_columns(rows, none_reward=0.0)["unscorable"].tolist() == [False, False]  # scored explicitly
    assert row_columns(_rows(["g"], ["a"], [1.0]))["unscorable"].tolist() == [False]  # another reward: no flag


def test_clusterer_errors_name_the_group():
    class Short(PrefixClusterer):
        def cluster(self, prompt, responses, **context):
            res = super().cluster(prompt, responses)
            res.ids = res.ids[:-1]
            return res

    with pytest.raises(ValueError, match=r"returned 1 ids for a group of 2 responses \(group 'g1'\)"):
        cluster_results(_rows(["g1", "g1"], ["a", "b"], [1, 0]), VerlSettings(clusterer="prefix"), Short())


def test_ids_from_reward_extras():
    rows = _rows(["g", "g", "g"], ["a", "b", "c"], [1, 0, 1], [{"cluster_id": 3}, {"cluster_id": 3.0}, {"cluster_id": 7}])
    found, _ = cluster_results(rows, VerlSettings(cluster_extra_key="cluster_id"))
    assert found["g"].ids == [3, 3, 7] and found["g"].backend == "reward_extra"
    with pytest.raises(ValueError, match=r"row 1 .*no extra 'cluster_id'.*its extras: score"):
        ids_from_extras(_rows(["g", "g"], ["a", "b"], [1, 0], [{"cluster_id": 1}, {"score": 0.0}]), "cluster_id")
    for bad in (1.5, "x", True, None):
        with pytest.raises(ValueError, match="is not an integer id"):
            ids_from_extras(_rows(["g"], ["a"], [1], [{"cluster_id": bad}]), "cluster_id")


def test_no_cluster_source_and_scatter_fills_padding():
    rows = _rows(["g", "g"], ["a", "b"], [1, 0], [{"score": 1.0, "tests": [1, 0]}, {"score": 0.0, "tests": [0, 0]}])
    assert cluster_results(rows, VerlSettings()) == (None, 0.0)
    cols = row_columns(rows)
    assert set(cols) == {"score", "tests", "unscorable", "session", "session_final", "prompt_key"}
    assert cols["prompt_key"].tolist() == [rows.prompts[0], rows.prompts[1]]  # no problem ids: the prompt text
    assert cols["tests"][0] == [1, 0] and cols["tests"].shape == (2,)  # list-valued extras stay per row
    full = scatter_columns(cols, np.array([0, 2]), 4)
    assert full["score"].tolist() == [1.0, None, 0.0, None] and full["unscorable"].tolist() == [False] * 4
    assert full["session_final"].tolist() == [True] * 4 and full["session"][1] != full["session"][3]


# --- the verl estimator adapter (torch, no verl): the group step on verl's tensors ---------------


def verl_step(name, rewards, uids, lengths, *, settings=None, columns=None, found=None, T=6):
    """Run polyepo's verl estimator on a batch laid out as verl lays it out."""
    torch = pytest.importorskip("torch")
    from polyepo.train.verl.estimators import estimator_columns, verl_estimator

    B = len(rewards)
    mask, scores = torch.zeros(B, T), torch.zeros(B, T)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1  # n = 0: a rejected row (or verl's padding) keeps its score, loses its tokens
        scores[i, max(n, 1) - 1] = 0.0 if rewards[i] is None else float(rewards[i])  # 0.0: verl's stand-in for None
    config = {"polyepo": settings or {}}
    cols = {"unscorable": [r is None for r in rewards], **(columns or {})}
    with estimator_columns(uids, cols, found) as ctx:
        adv, ret = verl_estimator(name)(token_level_rewards=scores, response_mask=mask, index=np.array(uids, dtype=object),
                                        config=config)
    assert torch.equal(adv, ret)
    first = adv.numpy()[np.arange(B), 0]
    assert np.all(adv.numpy() == first[:, None] * mask.numpy())  # broadcast over the response tokens
    return first, ctx.metrics


@pytest.mark.parametrize("name, options", ESTIMATORS)
def test_verl_adapter_equals_the_group_step_on_the_parity_batch(name, options):
    rng = np.random.default_rng(7)
    uids = np.array([f"u{i // 4}" for i in range(len(REWARDS))], dtype=object)
    perm = rng.permutation(len(REWARDS))  # verl's rows of a group are not adjacent
    found = {}  # each group's ids in the order its rows appear in verl's batch (as the trainer clusters them)
    for k, res in enumerate(results()):
        res.ids = [res.ids[i % 4] for i in perm if i // 4 == k]
        found[f"u{k}"] = res
    got, metrics = verl_step(name, [REWARDS[i] for i in perm], list(uids[perm]), rng.integers(1, 6, len(REWARDS)),
                             settings={"estimator_options": options}, found=found)
    want = group_step(REWARDS, list(uids), results(), estimator=name, estimator_options=options)
    np.testing.assert_allclose(got, want.advantages[perm].astype(np.float32), rtol=1e-6, atol=1e-6)
    assert without_timing(metrics) == pytest.approx(without_timing(want.metrics), abs=1e-12)
    if name == "dr_grpo":
        np.testing.assert_allclose(got, np.array(DR_GRPO_ADVANTAGES)[perm], atol=1e-7)


def test_verl_adapter_keeps_rejected_rows_and_leaves_padding_groups_out():
    # group a: row 2 rejected (no response token left): its reward stays in the baseline, advantage 0
    uids = ["a", "a", "a", "pad", "pad"]
    got, _ = verl_step("dr_grpo", [1, 0, 1, 0, 0], uids, [3, 2, 0, 0, 0])
    np.testing.assert_allclose(got, [1 / 3, -2 / 3, 0, 0, 0], atol=1e-7)
    # poly_epo with set_size 4 on a padding group of 2 would be an error: left out
    found = {"a": PrefixClusterer().cluster("", ["x", "y", "x"])}
    got, metrics = verl_step("poly_epo", [1, 0, 1, 0, 0], uids, [3, 2, 1, 0, 0], found=found,
                             settings={"estimator_options": {"set_size": 3}})
    np.testing.assert_allclose(got[:3], group_step([1, 0, 1], ["a"] * 3, [1, 2, 1], estimator="poly_epo",
                                                   estimator_options={"set_size": 3}).advantages, atol=1e-6)
    assert metrics["polyepo/groups"] == 1 and got[3:].tolist() == [0, 0]


def test_verl_adapter_sessions_take_their_final_outputs_advantage():
    keys = ["a_0_0", "a_0_1", "a_1_0", "b_0_0", "b_1_0"]
    sessions, final = session_finals(keys, 5)
    got, metrics = verl_step("dr_grpo", [1, 1, 0, 1, 0], ["a", "a", "a", "b", "b"], [2, 3, 1, 1, 2],
                             columns={"session": sessions, "session_final": final})
    # group a enters with its two final outputs [1, 0]: +0.5 / -0.5; row 0 takes row 1's advantage
    np.testing.assert_allclose(got, [0.5, 0.5, -0.5, 0.5, -0.5], atol=1e-7)
    assert metrics["polyepo/rows"] == 4


def test_failed_groups_are_counted_and_too_many_stop_the_step():
    broken = {u: BrokenClusterer().cluster("", ["a", "b"]) for u in ("g1", "g2")}
    _, metrics = verl_step("dr_grpo", [1, 0, 1, 1], ["g1", "g1", "g2", "g2"], [1, 1, 1, 1], found=broken,
                           settings={"max_failed_group_fraction": 1.0})
    assert metrics["polyepo/cluster_failures"] == 2 and metrics["polyepo/cluster_zero_diversity"] == 2
    assert "polyepo/clusters_distinct" not in metrics  # an outage is not a diversity collapse
    with pytest.raises(RuntimeError, match=r"failed on 2 of 2 groups .*judge unreachable.*zero_diversity"):
        verl_step("dr_grpo", [1, 0, 1, 1], ["g1", "g1", "g2", "g2"], [1, 1, 1, 1], found=broken)


def test_startup_check_names_bad_settings_and_rewards():
    cfg = {"algorithm": {"adv_estimator": "poly_epo", "polyepo": {"estimator_options": {"set_size": 8}}},
           "actor_rollout_ref": {"rollout": {"n": 4}}}
    with pytest.raises(ValueError, match="set_size=8 exceeds actor_rollout_ref.rollout.n=4"):
        check_startup(cfg)
    cfg["algorithm"]["polyepo"]["estimator_options"] = {"sett_size": 2}
    with pytest.raises(ValueError, match="unknown option 'sett_size'"):
        check_startup(cfg)
    cfg["algorithm"]["polyepo"]["estimator_options"] = {}
    cfg["reward"] = {"custom_reward_function": {"path": "pkg://polyepo.train.verl.reward",
                                                "reward_kwargs": {"reward": "math_answer", "reward_options": {"timout_s": 1}}}}
    with pytest.raises(ValueError, match="unknown option 'timout_s' \\(did you mean 'timeout_s'\\?\\)"):
        check_startup(cfg)
    cfg["reward"]["custom_reward_function"]["reward_kwargs"]["reward_options"] = {}
    assert check_startup(cfg).estimator_options == {}


def test_missing_packages_fail_at_startup_naming_them(monkeypatch):
    """A reward or clusterer whose package is absent fails when it is built (both engines build
    them at start-up), with the package's name."""
    import importlib.util

    from polyepo.clustering import make_clusterer
    from polyepo.registry import MissingDependencyError
    from polyepo.rewards import make_reward

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("math_verify", "openai") else real(name, *a))
    with pytest.raises(MissingDependencyError, match="reward function 'math_answer' needs the package.*math-verify"):
        make_reward("math_answer")
    with pytest.raises(MissingDependencyError, match="clusterer 'judge' needs the package.*openai"):
        make_clusterer("judge", model="m")
    cfg = {"algorithm": {"adv_estimator": "dr_grpo"},
           "reward": {"custom_reward_function": {"path": "pkg://polyepo.train.verl.reward",
                                                 "reward_kwargs": {"reward": "math_answer"}}}}
    from polyepo.train.verl.reward import _cached_reward

    _cached_reward.cache_clear()
    with pytest.raises(MissingDependencyError, match="math-verify"):
        check_startup(cfg)


def test_reward_adapter_scores_with_the_registered_reward():
    with registered():
        kw = {"reward": "exact_answer"}
        ok = compute_score("toy", " 42 ", None, {"prompt": "6*7?", "answer": "42"}, **kw)
        assert ok == {"score": 1.0, "reward_none": 0}
        assert compute_score("toy", "41", None, {"prompt": "6*7?", "answer": "42"}, **kw)["score"] == 0.0
        # a row the reward does not apply to: flagged (the group step's unscorable policy applies),
        # or scored with none_reward when one is given
        assert compute_score("toy", "41", None, {"prompt": "p"}, **kw) == {"score": 0.0, "reward_none": 1}
        assert compute_score("toy", "41", None, {"prompt": "p"}, none_reward=0.5, **kw) == {"score": 0.5, "reward_none": 1}
        with pytest.raises(ValueError, match="reward_kwargs.reward is not set"):
            compute_score("toy", "41", None, {})
        with pytest.raises(KeyError, match="valid reward functions: .*exact_answer"):
            compute_score("toy", "41", None, {}, reward="exactanswer")


def test_reward_adapter_rejects_non_finite_and_wrong_length():
    from polyepo.rewards import REWARDS

    REWARDS.register("nan_reward", overwrite=True)(lambda **o: (lambda p, c, **k: [float("nan")]))
    REWARDS.register("two_values", overwrite=True)(lambda **o: (lambda p, c, **k: [1.0, 0.0]))
    try:
        with pytest.raises(ValueError, match="must be finite"):
            compute_score("toy", "x", None, {}, reward="nan_reward")
        with pytest.raises(ValueError, match="returned 2 values for 1 completion"):
            compute_score("toy", "x", None, {}, reward="two_values")
    finally:
        REWARDS._items.pop("nan_reward", None)
        REWARDS._items.pop("two_values", None)


def test_prefix_helper_matches_hand_ids():
    assert prefix_ids(["ab", "ac", "b", ""]) == [1, 1, 2, DEGENERATE]


def test_task_rows_become_verl_rows_and_back():
    import json

    from polyepo.train.verl.data import to_verl_row

    row = {"prompt": "Write add(a, b).", "problem_id": 7, "test": "assert add(1, 2) == 3", "tags": ["math"], "answer": None}
    v = to_verl_row(row, 3, data_source="leetcode2k", ability="code", answer_key="answer")
    assert v["prompt"] == [{"role": "user", "content": "Write add(a, b)."}]
    assert v["reward_model"] == {"style": "rule", "ground_truth": ""}
    assert v["extra_info"]["index"] == 3 and v["extra_info"]["problem_id"] == "7"
    assert json.loads(v["extra_info"]["polyepo_row"]) == row
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert to_verl_row({"prompt": chat, "problem_id": "a", "answer": 5}, 0, data_source="m", ability="math",
                       answer_key="answer")["reward_model"]["ground_truth"] == "5"
    with pytest.raises(ValueError, match="row 4 has no 'problem_id'"):
        to_verl_row({"prompt": "x"}, 4, data_source="d", ability="code", answer_key="answer")
    # the reward adapter decodes the stored row: its columns reach the reward function
    with registered():
        got = compute_score("m", "5", "5", {"index": 0, "polyepo_row": json.dumps({"prompt": "p", "answer": "5"})},
                            reward="exact_answer")
        assert got["score"] == 1.0


def test_pass_rate_filter_keeps_seed002_band(tmp_path):
    from polyepo.train.verl.data import filter_by_pass_rate, read_jsonl

    rows = [{"problem_id": i, "prompt": f"p{i}"} for i in range(5)]
    counts = [{"problem_id": i, "passed": p, "n": 16} for i, p in enumerate([0, 1, 12, 13, 6])]
    kept = filter_by_pass_rate(rows, counts, 1, 12)
    assert [r["problem_id"] for r in kept] == [1, 2, 4]
    with pytest.raises(ValueError, match="1 problem.*no pass count.*'4'"):
        filter_by_pass_rate(rows, counts[:4], 1, 12)
    with pytest.raises(ValueError, match="min_pass <= max_pass"):
        filter_by_pass_rate(rows, counts, 5, 2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match="bad.jsonl:3: each line must be a JSON object"):
        read_jsonl(bad)
    bad.write_text('{"problem_id": 1\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: not valid JSON"):
        read_jsonl(bad)


def test_yaml_config_matches_settings_and_reward_signature():
    import inspect
    from pathlib import Path

    import yaml

    import polyepo.train.verl as pv

    cfg = yaml.safe_load((Path(pv.CONFIG_DIR) / f"{pv.CONFIG_NAME}.yaml").read_text())
    section = cfg["algorithm"]["polyepo"]
    assert {k: ({} if v is None and isinstance(defaults()[k], dict) else v) for k, v in section.items()} == defaults()
    kwargs = cfg["reward"]["custom_reward_function"]["reward_kwargs"]
    params = inspect.signature(compute_score).parameters
    assert set(kwargs) == {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert kwargs == {n: params[n].default for n in kwargs}
    assert cfg["reward"]["custom_reward_function"]["path"] == "pkg://polyepo.train.verl.reward"
    assert cfg["ray_kwargs"]["ray_init"]["runtime_env"]["worker_process_setup_hook"] == "polyepo.train.verl.register"
