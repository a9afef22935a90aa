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
    completions = [" S A1 B1 T", "S A2 B1 T", " S A1 B3 T", "S A3 B3 T <eos>", "nonsense", "S A9 B1 T", "",
                   "S A1 B1 T T T", "S A3 B2 T <eos> <pad> <pad>", "S A3 B2 T ,"]
    out = reward(prompts=["p"] * 10, completions=completions, blocked=[blocked] * 10)
    assert out == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert reward.last_stats == {"malformed": 5, "trailing": 2, "scored": 10}
    conv = reward(prompts=["p"], completions=[[{"role": "assistant", "content": "S A3 B2 T"}]], blocked=[blocked])
    assert conv == [1.0]
    ids = make_clusterer("toy_paths", width=3).cluster("p", completions).ids
    assert ids == [1, 4, 3, 9, 100, 100, 100, 100, 8, 100]


def test_parse_route_and_ids():
    assert parse_route("S A2 B3 T", 3) == ("A2", "B3")
    assert parse_route("S A2 B3 T\n", 3) == ("A2", "B3")
    assert parse_route("S A2 B3", 3) is None
    assert parse_route("S A4 B1 T", 3) is None
    # a route and then anything but the end is not an answer: the model that never stops
    assert parse_route("S A2 B3 T T T", 3) is None
    assert parse_route("S A2 B3 T <eos> S", 3) is None
    assert sorted(route_id(f"A{i}", f"B{j}", 3) for i in range(1, 4) for j in range(1, 4)) == list(range(1, 10))


def test_default_task_rows_are_pinned():
    # the rare-route options must leave the default task's instances as they were
    rows = load_task("toy_paths").rows("test", 2)
    assert [r["prompt"] for r in rows] == ["blocked: S A3 , A1 B3 , A2 B1 , A2 B3 , A3 B2 , B3 T . path:",
                                           "blocked: A1 B2 , A3 B2 , B3 T . path:"]
    assert [r["valid_routes"] for r in rows] == [[1, 2, 5], [1, 4, 5, 7]] and "rare_only" not in rows[0]


def test_rare_route_variant_rows():
    task = load_task("toy_paths_rare")
    assert task.rare == [("A3", "B1"), ("A3", "B2"), ("A3", "B3")]
    rare_ids = {route_id(a, b, 3) for a, b in task.rare}
    rows = task.rows("train", 2000)
    rare_only = [r for r in rows if r["rare_only"]]
    assert 0.2 < len(rare_only) / len(rows) < 0.3  # rare_only_prob = 0.25
    for r in rare_only:
        assert set(r["valid_routes"]) <= rare_ids and len(r["valid_routes"]) >= 2
    # nearly all by the forced blocks S-A1, S-A2; a few because random blocks cut every common route
    assert sum({"S A1", "S A2"} <= set(r["blocked"]) for r in rare_only) > 0.9 * len(rare_only)
    assert all(not r["rare_only"] for r in rows if set(r["valid_routes"]) - rare_ids)
    held = task.rows("heldout", 100)
    assert all(route_id("A1", "B1", 3) not in r["valid_routes"] for r in held)
    # rare routes through a node shared with common routes: the common ones there get blocked
    wide = load_task("toy_paths", width=4, rare_routes=2, rare_only_prob=0.5)
    assert wide.rare == [("A4", "B3"), ("A4", "B4")]
    assert wide.rare_only_edges() == {("S", "A1"), ("S", "A2"), ("S", "A3"), ("A4", "B1"), ("A4", "B2")}


def test_rare_warm_start_mix():
    import random
    from collections import Counter

    task = load_task("toy_paths_rare", rare_mass=0.05)
    rng = random.Random(0)
    answers = Counter(task.warmstart_answer(r, rng, 0.5, 0.6).split()[1] for r in task.rows("train", 4000))
    assert 0.04 < answers["A3"] / 4000 < 0.06  # rare routes: rare_mass of the answers, nothing more
    none = load_task("toy_paths_rare", rare_mass=0.0)
    assert all(none.warmstart_answer(r, rng, 0.5, 0.6).split()[1] != "A3" for r in none.rows("train", 500))


@pytest.mark.parametrize("options, match", [
    ({"rare_routes": 8}, r"rare_routes must be in \[0, 7\]"),
    ({"rare_routes": 1, "rare_only_prob": 0.2}, "needs rare_routes >= min_valid"),
    ({"rare_mass": 1.0}, r"rare_mass must be in \[0, 1\)"),
])
def test_rare_options_are_checked(options, match):
    with pytest.raises(ValueError, match=match):
        load_task("toy_paths", **options)


def test_bad_options_and_splits():
    with pytest.raises(ValueError, match="width must be in"):
        load_task("toy_paths", width=9)
    with pytest.raises(ValueError, match="valid splits: train, test, heldout"):
        load_task("toy_paths").rows("validation")
    with pytest.raises(ValueError, match="valid tasks"):
        load_task("toy-paths")
    assert "toy_paths" in TASKS
