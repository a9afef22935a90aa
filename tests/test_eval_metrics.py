"""Test-time scaling figures against enumeration of subsets; standard errors on known variances."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from polyepo.metrics import (
    best_of_k,
    bootstrap_standard_error,
    distinct_at_k,
    keys_decide_correctness,
    majority_at_k,
    pass_at_k,
    standard_error,
)

DEG = {0, 100}


def subsets(n: int, k: int):
    return list(itertools.combinations(range(n), k))


def brute_majority(keys, correct, k) -> float:
    """Mean over every k-subset of P(winner correct), ties split evenly, degenerate keys silent."""
    total = 0.0
    subs = subsets(len(keys), k)
    for s in subs:
        votes = Counter(keys[i] for i in s if keys[i] not in DEG)
        if not votes:
            continue
        top = max(votes.values())
        winners = [key for key, v in votes.items() if v == top]
        ok = {keys[i]: correct[i] for i in range(len(keys))}
        total += sum(ok[w] for w in winners) / len(winners)
    return total / len(subs)


def random_group(rng: np.random.Generator, n: int, consistent: bool = True):
    """n samples with keys in 1..4 or degenerate 100; verdicts decided by key if ``consistent``."""
    keys = [int(x) for x in rng.choice([1, 2, 3, 4, 100], size=n, p=[0.35, 0.25, 0.15, 0.1, 0.15])]
    good = {k: bool(rng.random() < 0.5) for k in (1, 2, 3, 4)}
    correct = [k != 100 and (good[k] if consistent else bool(rng.random() < 0.5)) for k in keys]
    return keys, correct


@pytest.mark.parametrize("seed", range(12))
def test_best_of_k_and_distinct_at_k_match_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    values = rng.choice([0.0, 0.25, 0.5, 1.0], size=n).tolist()
    keys, correct = random_group(rng, n)
    for k in range(1, n + 1):
        subs = subsets(n, k)
        assert best_of_k(values, k) == pytest.approx(np.mean([max(values[i] for i in s) for s in subs]), abs=1e-12)
        expected = np.mean([len({keys[i] for i in s if correct[i]} - DEG) for s in subs])
        per_cluster = list(Counter(c for c, ok in zip(keys, correct) if ok and c not in DEG).values())
        assert distinct_at_k(per_cluster, n, k) == pytest.approx(expected, abs=1e-12)


def test_best_of_k_equals_pass_at_k_for_binary_rewards():
    for c in range(9):
        values = [1.0] * c + [0.0] * (8 - c)
        for k in range(1, 9):
            assert best_of_k(values, k) == pytest.approx(pass_at_k(8, c, k), abs=1e-15)


def test_majority_known_values_and_exact_at_n():
    keys, correct = [1, 1, 2, 100], [True, True, False, False]
    # k=2: {1,1} right; {1,2} twice a tie (1/2); {1,100} twice right; {2,100} wrong -> 4/6
    res = majority_at_k(keys, correct, [1, 2, 3, 4], draws=40_000, rng=np.random.default_rng(1))
    assert res[1] == pytest.approx(0.5, abs=0.01)
    assert res[2] == pytest.approx(4 / 6, abs=0.01)
    assert res[3] == pytest.approx(0.75, abs=0.01)
    assert res[4] == 1.0  # exact: key 1 has 2 votes
    assert majority_at_k([1, 2, 100], [True, False, False], [3])[3] == 0.5  # exact tie split
    assert majority_at_k([100, 0], [False, False], [1, 2]) == {1: 0.0, 2: 0.0}  # nobody votes


@pytest.mark.parametrize("seed", range(6))
def test_majority_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    keys, correct = random_group(rng, 7)
    res = majority_at_k(keys, correct, range(1, 8), draws=20_000, rng=np.random.default_rng(seed))
    for k in range(1, 8):
        # Monte Carlo: standard error <= 0.5 / sqrt(20000) = 0.0035; allow 5 of them
        assert res[k] == pytest.approx(brute_majority(keys, correct, k), abs=0.018)
    assert res[7] == pytest.approx(brute_majority(keys, correct, 7), abs=1e-12)


def test_keys_decide_correctness():
    assert keys_decide_correctness([1, 1, 2, 100, 100], [True, True, False, True, False])  # degenerate ignored
    assert not keys_decide_correctness([1, 1, 2], [True, False, False])
    assert not keys_decide_correctness([1, None], [True, False])
    with pytest.raises(ValueError, match="decide correctness"):
        majority_at_k([1, 1], [True, False], [1])


def test_validation():
    with pytest.raises(ValueError, match=r"k must be in \[1, n\] = \[1, 3\]"):
        best_of_k([0, 1, 0], 4)
    with pytest.raises(ValueError, match="finite"):
        best_of_k([0, float("nan")], 1)
    with pytest.raises(ValueError, match="sums to 5 > n = 4"):
        distinct_at_k([3, 2], 4, 1)
    with pytest.raises(ValueError, match=r"k must be in \[1, n\]"):
        majority_at_k([1, 2], [True, False], [3])


def test_standard_error_by_hand():
    # values 1, 2, 3, 4: sample std = sqrt(5/3), SE = sqrt(5/3) / 2
    assert standard_error([1, 2, 3, 4]) == pytest.approx(np.sqrt(5 / 3) / 2)
    np.testing.assert_allclose(standard_error([[1, 0], [2, 0], [3, 0], [4, 0]]), [np.sqrt(5 / 3) / 2, 0])
    assert np.isnan(standard_error([0.7]))
    assert np.isnan(bootstrap_standard_error([0.7]))


def test_standard_errors_on_known_variance():
    """Problems with pass rates p ~ U(0, 1), n samples each: the mean pass@1 over P problems has
    variance Var(p)/P + E[p(1-p)]/(nP) = (1/12 + 1/(6n)) / P. Both SEs must estimate its root."""
    rng = np.random.default_rng(0)
    P, n, reps = 60, 8, 400
    true_se = np.sqrt((1 / 12 + 1 / (6 * n)) / P)
    means, ses, boots = [], [], []
    for _ in range(reps):
        p = rng.random(P)
        est = rng.binomial(n, p) / n  # pass@1 per problem = c / n
        means.append(est.mean())
        ses.append(standard_error(est))
        boots.append(bootstrap_standard_error(est, draws=300, rng=rng))
    assert np.std(means, ddof=1) == pytest.approx(true_se, rel=0.1)  # the simulation itself
    assert np.mean(ses) == pytest.approx(true_se, rel=0.05)
    assert np.mean(boots) == pytest.approx(true_se, rel=0.06)
    covered = np.mean(np.abs(np.array(means) - 0.5) < 1.96 * np.array(ses))
    assert 0.92 <= covered <= 0.98  # nominal 95% intervals cover the true mean 0.5


def test_bootstrap_is_seeded_and_columnwise():
    v = np.random.default_rng(3).random((50, 3))
    a = bootstrap_standard_error(v, rng=np.random.default_rng(7))
    b = bootstrap_standard_error(v, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3,)
    np.testing.assert_allclose(a, standard_error(v), rtol=0.15)
