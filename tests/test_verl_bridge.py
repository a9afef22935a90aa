"""The verl bridge's verl-free parts: settings, per-group clustering, the reward adapter.

These run in the main environment (no verl). The parts that need verl itself are in
tests/test_verl.py, which runs in .venv-verl.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from polyepo.clustering import DEGENERATE
from polyepo.clustering.base import prompt_text
from polyepo.train.verl.groups import (
    BatchRows,
    batch_columns,
    group_indices,
    ids_from_extras,
    scatter_columns,
)
from polyepo.train.verl.reward import compute_score
from polyepo.train.verl.settings import VerlSettings, defaults
from verl_helpers import BrokenClusterer, PrefixClusterer, prefix_ids, registered


def test_import_does_not_load_verl_or_torch():
    code = (
        "import sys, polyepo.train.verl, polyepo.train.verl.groups, polyepo.train.verl.reward, "
        "polyepo.train.verl.settings, polyepo.train.verl.estimators\n"
        "print(','.join(m for m in ('verl', 'torch', 'ray', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_settings_validation_names_the_key():
    s = VerlSettings.from_config({"polyepo": {"clusterer": "prefix", "estimator_options": {"set_size": 2}}})
    assert s.cluster_source == "clusterer" and s.estimator_options == {"set_size": 2}
    assert VerlSettings.from_config({}).cluster_source == "none"
    assert VerlSettings.from_config({"polyepo": {"estimator_options": None}}).estimator_options == {}
    with pytest.raises(ValueError, match="unknown key.*'clusterr'.*valid keys: estimator_options"):
        VerlSettings.from_mapping({"clusterr": "x"})
    with pytest.raises(ValueError, match="OR cluster_extra_key"):
        VerlSettings.from_mapping({"clusterer": "x", "cluster_extra_key": "cluster_id"})
    with pytest.raises(ValueError, match="cluster_workers"):
        VerlSettings.from_mapping({"cluster_workers": 0})
    with pytest.raises(ValueError, match="max_failed_group_fraction"):
        VerlSettings.from_mapping({"max_failed_group_fraction": 1.5})
    assert defaults()["cluster_workers"] == 8 and defaults()["estimator_options"] == {}


def test_prompt_text_and_groups():
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Add 2 and 3."}]
    assert prompt_text(chat) == "Add 2 and 3."
    assert prompt_text(np.array(chat, dtype=object)) == "Add 2 and 3."
    assert prompt_text("plain") == "plain"
    with pytest.raises(ValueError, match="prompt must be a string or a list of chat messages, got int"):
        prompt_text(3)
    groups = group_indices(["b", "a", "b", "c", "a"])
    assert [g.tolist() for g in groups] == [[0, 2], [1, 4], [3]]


def _rows(uids, responses, rewards, extras=None) -> BatchRows:
    return BatchRows(
        uids=uids, prompts=[f"prompt of {u}" for u in uids], responses=responses,
        rewards=np.asarray(rewards, dtype=float), extras=extras or [{} for _ in uids],
    )


def test_clustering_runs_once_per_whole_group_in_any_row_order():
    # two groups interleaved, as after verl's balancing across data-parallel ranks
    uids = ["g1", "g2", "g1", "g2", "g1", "g2", "g1", "g2"]
    responses = ["a1", "x", "b2", "x", "a3", "", "c4", "y"]
    rewards = [1, 0, 1, 0, 0, 0, 1, 1]
    extras = [{"score": float(r), "reward_none": 0} for r in rewards]
    clusterer = PrefixClusterer()
    cols, stats = batch_columns(_rows(uids, responses, rewards, extras), VerlSettings(clusterer="prefix"), clusterer)
    # group g1 = rows 0,2,4,6 -> a,b,a,c -> 1,2,1,3 ; group g2 = rows 1,3,5,7 -> x,x,'',y -> 1,1,100,2
    assert cols["cluster_id"].tolist() == [1, 1, 2, 1, 1, DEGENERATE, 3, 2]
    assert clusterer.calls == 2
    assert clusterer.seen_context_keys == ("reward_none", "rewards", "score")
    assert cols["score"].tolist() == [float(r) for r in rewards]
    assert stats["polyepo/cluster/groups"] == 2 and stats["polyepo/cluster/failed_groups"] == 0
    # distinct non-degenerate among all: g1 {1,2,3} = 3, g2 {1,2} = 2; among correct: g1 rows 0,2,6 -> {1,2,3}=3, g2 row 7 -> {2}=1
    assert stats["polyepo/diversity/distinct_mean"] == 2.5
    assert stats["polyepo/diversity/distinct_correct_mean"] == 2.0
    assert stats["polyepo/reward/none_rows"] == 0


def test_failed_groups_are_counted_and_too_many_stop_the_step():
    rows = _rows(["g1", "g1", "g2", "g2"], ["a", "b", "c", "d"], [1, 0, 1, 1])
    cols, stats = batch_columns(rows, VerlSettings(clusterer="broken", max_failed_group_fraction=1.0), BrokenClusterer())
    assert cols["cluster_id"].tolist() == [DEGENERATE] * 4
    assert stats["polyepo/cluster/failed_groups"] == 2 and stats["polyepo/cluster/failed_group_fraction"] == 1.0
    with pytest.raises(RuntimeError, match=r"failed on 2 of 2 groups .*judge unreachable.*zero_diversity"):
        batch_columns(rows, VerlSettings(clusterer="broken"), BrokenClusterer())


def test_clusterer_errors_name_the_group():
    class Short(PrefixClusterer):
        def cluster(self, prompt, responses, **context):
            res = super().cluster(prompt, responses)
            res.ids = res.ids[:-1]
            return res

    with pytest.raises(RuntimeError, match=r"uid='g1'.*returned 1 ids for a group of 2"):
        batch_columns(_rows(["g1", "g1"], ["a", "b"], [1, 0]), VerlSettings(clusterer="prefix"), Short())


def test_ids_from_reward_extras():
    rows = _rows(["g", "g", "g"], ["a", "b", "c"], [1, 0, 1], [{"cluster_id": 3}, {"cluster_id": 3.0}, {"cluster_id": 7}])
    cols, stats = batch_columns(rows, VerlSettings(cluster_extra_key="cluster_id"))
    assert cols["cluster_id"].dtype == np.int64 and cols["cluster_id"].tolist() == [3, 3, 7]
    assert stats["polyepo/diversity/distinct_correct_mean"] == 2.0
    with pytest.raises(ValueError, match=r"row 1 .*no extra 'cluster_id'.*its extras: score"):
        ids_from_extras(_rows(["g", "g"], ["a", "b"], [1, 0], [{"cluster_id": 1}, {"score": 0.0}]), "cluster_id")
    for bad in (1.5, "x", True, None):
        with pytest.raises(ValueError, match="is not an integer id"):
            ids_from_extras(_rows(["g"], ["a"], [1], [{"cluster_id": bad}]), "cluster_id")


def test_no_cluster_source_gives_extras_only_and_scatter_fills_padding():
    rows = _rows(["g", "g"], ["a", "b"], [1, 0], [{"score": 1.0, "tests": [1, 0]}, {"score": 0.0, "tests": [0, 0]}])
    cols, stats = batch_columns(rows, VerlSettings())
    assert set(cols) == {"score", "tests"} and stats == {}
    assert cols["tests"][0] == [1, 0] and cols["tests"].shape == (2,)  # list-valued extras stay per row
    full = scatter_columns({"cluster_id": np.array([4, 5]), "score": cols["score"]}, np.array([0, 2]), 4)
    assert full["cluster_id"].tolist() == [4, DEGENERATE, 5, DEGENERATE]
    assert full["score"].tolist() == [1.0, None, 0.0, None]


def test_reward_adapter_scores_with_the_registered_reward():
    with registered():
        kw = {"reward": "exact_answer"}
        ok = compute_score("toy", " 42 ", None, {"prompt": "6*7?", "answer": "42"}, **kw)
        assert ok == {"score": 1.0, "reward_none": 0}
        assert compute_score("toy", "41", None, {"prompt": "6*7?", "answer": "42"}, **kw)["score"] == 0.0
        # a row the reward does not apply to: an error unless a score is given for it, then counted
        with pytest.raises(ValueError, match="returned None .*none_reward"):
            compute_score("toy", "41", None, {"prompt": "p"}, **kw)
        assert compute_score("toy", "41", None, {"prompt": "p"}, none_reward=0.0, **kw) == {"score": 0.0, "reward_none": 1}
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
