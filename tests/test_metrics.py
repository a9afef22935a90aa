"""pass@k against brute force and exact fractions; validation; diversity counts."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import comb

import pytest

from polyepo.metrics import distinct_clusters, pass_at_k, pass_at_k_curve, powers_of_two


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-15)


def test_known_values():
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # only {wrong, wrong} of 6 pairs fails
    assert pass_at_k(256, 1, 256) == 1.0


@pytest.mark.parametrize("n,c,k", [(1024, 1, 1), (1024, 3, 512), (1024, 1000, 10), (4096, 2, 2048), (1024, 1, 1023)])
def test_stable_for_large_n(n, c, k):
    exact = 1 - Fraction(comb(n - c, k), comb(n, k))
    assert pass_at_k(n, c, k) == float(exact)  # correctly rounded


def test_curve_and_powers_of_two():
    assert powers_of_two(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert powers_of_two(10) == [1, 2, 4, 8, 10]
    assert powers_of_two(1) == [1]
    curve = pass_at_k_curve(16, 4, powers_of_two(16))
    values = list(curve.values())
    assert list(curve) == [1, 2, 4, 8, 16] and values == sorted(values) and values[-1] == 1.0


@pytest.mark.parametrize(
    "args, match",
    [((0, 0, 1), "n must be >= 1"), ((5, 6, 1), r"c must be in \[0, n\] = \[0, 5\]"),
     ((5, -1, 1), "c must be in"), ((5, 1, 0), r"k must be in \[1, n\] = \[1, 5\]"),
     ((5, 1, 6), "cannot be estimated"), ((5.0, 1, 1), "n must be an integer"), ((5, 1, True), "k must be an integer")],
)
def test_pass_at_k_validation(args, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(*args)


def test_distinct_clusters():
    assert distinct_clusters([1, 2, 2, 100, 0, 3]) == 3
    assert distinct_clusters([1, 2, 2, 100, 0, 3], [True, False, True, True, True, False]) == 2
    assert distinct_clusters([5, 5], degenerate=()) == 1
    with pytest.raises(ValueError, match="length"):
        distinct_clusters([1, 2], [True])


def test_coverage_gain_hand_worked():
    from polyepo.metrics import coverage_gain

    base = [{"problem_id": "a", "rewards": [0, 0, 1], "clusters": [1, 2, 3]},
            {"problem_id": "b", "rewards": [0, 0], "clusters": [1, 100]},
            {"problem_id": "d", "rewards": [1, 0], "clusters": [2, 1]}]
    run = [{"problem_id": "a", "rewards": [1, 1, 0], "clusters": [3, 4, 100]},  # solved by both; 4 is new
           {"problem_id": "b", "rewards": [1, None], "clusters": [5, 6]},  # gained; 5 new, 6 not correct
           {"problem_id": "d", "rewards": [0, 0], "clusters": [2, 2]},  # lost
           {"problem_id": "c", "rewards": [1], "clusters": [1]}]  # not evaluated for the base: left out
    assert coverage_gain(base, run) == {"problems": 3, "solved": 2, "base_solved": 2, "gained": 1, "lost": 1,
                                        "new_strategies": 2, "new_strategy_problems": 2}
    assert coverage_gain(base, run, correct_threshold=2.0)["solved"] == 0
    with pytest.raises(ValueError, match="share no problem"):
        coverage_gain(base, [{"problem_id": "z", "rewards": [1], "clusters": [1]}])
