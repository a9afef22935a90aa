"""The toy paths task: deterministic splits, exact rewards and strategies."""

from __future__ import annotations

import pytest

from polyepo.clustering import make_clusterer
from polyepo.rewards import make_reward
from polyepo.tasks import TASKS, load_task
from polyepo.tasks.toy_paths import parse_route, route_edges, route_id


def test_rows_are_deterministic_and_well_formed():
    task = load_task("toy_paths")
    a, b = task.rows("train", 50), task.rows("train", 50)
    assert a == b
    assert a != task.rows("test", 50)
    for row in a:
        assert row["prompt"].startswith("blocked:") and row["prompt"].endswith("path:")
        assert len(row["valid_routes"]) >= task.min_valid
        blocked = {tuple(e.split()) for e in row["blocked"]}
        for rid in row["valid_routes"]:
            a_node, b_node = f"A{(rid - 1) // 3 + 1}", f"B{(rid - 1) % 3 + 1}"
            assert not set(route_edges(a_node, b_node)) & blocked


def test_heldout_always_blocks_the_popular_route():
    task = load_task("toy_paths")
    popular = route_id("A1", "B1", 3)
    assert all(popular not in r["valid_routes"] for r in task.rows("heldout"))
    train = task.rows("train", 2000)
    assert sum(popular in r["valid_routes"] for r in train) / len(train) > 0.8


def test_reward_and_clusterer_known_answers():
    reward = make_reward("toy_paths", width=3)
    blocked = ["S A2", "A1 B3"]
    completions = [" S A1 B1 T", "S A2 B1 T", " S A1 B3 T", "S A3 B3 T <eos>", "nonsense", "S A9 B1 T", ""]
    out = reward(prompts=["p"] * 7, completions=completions, blocked=[blocked] * 7)
    assert out == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert reward.last_stats == {"malformed": 3, "scored": 7}
    conv = reward(prompts=["p"], completions=[[{"role": "assistant", "content": "S A3 B2 T"}]], blocked=[blocked])
    assert conv == [1.0]
    ids = make_clusterer("toy_paths", width=3).cluster("p", completions).ids
    assert ids == [1, 4, 3, 9, 100, 100, 100]


def test_parse_route_and_ids():
    assert parse_route("S A2 B3 T", 3) == ("A2", "B3")
    assert parse_route("S A2 B3", 3) is None
    assert parse_route("S A4 B1 T", 3) is None
    assert sorted(route_id(f"A{i}", f"B{j}", 3) for i in range(1, 4) for j in range(1, 4)) == list(range(1, 10))


def test_bad_options_and_splits():
    with pytest.raises(ValueError, match="width must be in"):
        load_task("toy_paths", width=9)
    with pytest.raises(ValueError, match="valid splits: train, test, heldout"):
        load_task("toy_paths").rows("validation")
    with pytest.raises(ValueError, match="valid tasks"):
        load_task("toy-paths")
    assert "toy_paths" in TASKS
