"""A degenerate diversity signal is said once: nearly every group all apart (``exact`` on sampled
text) or one cluster, in training (its output and log.jsonl) and in evaluation; real clusterers
on the toy task stay quiet."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from polyepo.clustering import ClusterResult
from polyepo.groups.watch import FRACTION, MIN_GROUPS, WINDOW, DiversityWatch, GroupTally, diversity_warning


def result(ids, **kw) -> ClusterResult:
    return ClusterResult(ids=list(ids), backend="test", **kw)


APART = [1, 2, 3, 4, 100, 5, 6, 7]  # one degenerate rollout, the rest each alone
MIXED = [1, 1, 2, 3, 4, 5, 6, 7]    # two rollouts share a strategy
ONE = [1, 1, 1, 1, 100, 1, 1, 1]
NONE = [100] * 8


def test_a_group_is_all_apart_or_one_cluster_by_hand():
    t = GroupTally()
    for ids in (APART, MIXED, ONE, NONE, [1, 100, 100, 100], [2, 3]):
        t.add(ids, {0, 100})
    # APART, [2, 3] are apart; ONE, NONE and [1, 100, 100, 100] hold at most one strategy; NONE has none
    assert (t.groups, t.apart, t.one, t.none) == (6, 2, 3, 1)


def test_the_watch_warns_once_when_the_window_qualifies():
    assert (WINDOW, FRACTION, MIN_GROUPS) == (4, 0.9, 8)  # as docs/training.md says
    watch = DiversityWatch("exact")
    said = [watch.observe([result(APART), result(APART)], step=s) for s in range(1, 9)]
    assert said[:3] == [None] * 3 and said[4:] == [None] * 4  # a full window first, then once only
    assert said[3].startswith("degenerate diversity signal: in 8 of 8 clustered groups (100%) over steps 1-4, "
                              "no two rollouts shared a strategy (clusterer 'exact')")
    assert "coarser" in said[3] and "polyepo cluster-eval" in said[3]


def test_the_watch_stays_quiet_below_the_thresholds():
    watch = DiversityWatch("judge")
    # 7 of 8 groups apart (87.5% < 90%), then too few groups in a window
    steps = [[APART, APART], [APART, APART], [APART, APART], [APART, MIXED]] + [[APART]] * 6
    assert all(watch.observe([result(g) for g in groups]) is None for groups in steps)
    assert diversity_warning(GroupTally(7, 7, 0, 0), clusterer="x", where="w") is None  # under MIN_GROUPS


def test_one_cluster_names_groups_without_any_strategy_and_skips_stand_ins():
    watch = DiversityWatch("toy_paths", window=2)
    failed = result([100] * 8, failed=True, policy="zero_diversity")  # an outage, not a collapse
    assert watch.observe([failed] * 8) is None
    said = watch.observe([result(ONE)] * 4 + [result(NONE)] * 4, step=2)
    assert said is not None and said.startswith("degenerate diversity signal: 8 of 8 clustered groups (100%) over 2 steps")
    assert "held at most one strategy, 4 of them none at all (every rollout degenerate)" in said
    assert "clusterer 'toy_paths'" in said and "finer" in said


def train(cfg_lines: str, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(cfg_lines + f"output_dir: {tmp_path}/run\n"
                      "trainer: {max_steps: 5, per_device_train_batch_size: 16, save_strategy: 'no', logging_steps: 5}\n")
    env = {**os.environ, "POLYEPO_PROGRESS": "off"}
    out = subprocess.run([sys.executable, "-m", "polyepo", "train", "--config", str(config)], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    warnings = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"warning"' in x]
    return out.stderr, warnings


def test_training_with_exact_on_sampled_text_warns_once(model_cache, tmp_path):
    pytest.importorskip("trl")
    err, logged = train("model: toy-paths-random\nclusterer: exact\n", tmp_path)
    assert err.count("degenerate diversity signal") == 1, err[-2000:]
    assert "no two rollouts shared a strategy (clusterer 'exact')" in err
    assert len(logged) == 1 and logged[0]["step"] == 4 and "clusterer 'exact'" in logged[0]["warning"]


def test_training_with_the_toy_clusterer_stays_quiet(toy_base, tmp_path):
    pytest.importorskip("trl")
    err, logged = train(f"model: {toy_base}\n", tmp_path)
    assert "degenerate diversity" not in err and logged == []


def test_evaluation_applies_the_same_check(model_cache, toy_base, tmp_path, caplog):
    from polyepo.evaluate import evaluate, summarize

    small = dict(task="toy_paths", split="test", n=8, limit=10, max_new_tokens=6, batch_size=8, progress=False)
    with caplog.at_level(logging.WARNING, logger="polyepo.evaluate"):
        apart = evaluate("toy-paths-random", clusterer="exact", out=tmp_path / "exact.jsonl", **small)
    said = [r.getMessage() for r in caplog.records if "degenerate diversity" in r.getMessage()]
    assert len(said) == 1 and "over the problems of" in said[0] and "no two samples shared a strategy" in said[0]
    assert any("clusterer 'exact'" in n for n in summarize(apart).notes)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="polyepo.evaluate"):
        quiet = evaluate(toy_base, out=tmp_path / "toy.jsonl", **small)
    assert not [r for r in caplog.records if "degenerate diversity" in r.getMessage()]
    assert not any("degenerate diversity" in n for n in summarize(quiet).notes)
