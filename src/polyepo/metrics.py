"""Evaluation metrics: unbiased pass@k and strategy-diversity counts. Pure Python/NumPy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from math import comb

import numpy as np


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021, arXiv 2107.03374): ``1 - C(n-c, k) / C(n, k)``.

    The probability that a uniformly random k-subset of the n samples, c of them correct,
    holds at least one correct sample. Computed from exact integers and rounded once, so
    it is correctly rounded for any n (1024 and far beyond), with no cancellation.

    Args:
        n: samples drawn for the problem, >= 1.
        c: correct samples among them, 0 <= c <= n.
        k: subset size, 1 <= k <= n (a k above n is not estimable from n samples).
    """
    n, c, k = _check_int(n, "n"), _check_int(c, "c"), _check_int(k, "k")
    if n < 1:
        raise ValueError(f"n must be >= 1 (samples per problem), got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n] = [0, {n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n] = [1, {n}], got {k}; pass@k for k > n cannot be estimated from n samples")
    if n - c < k:
        return 1.0
    total = comb(n, k)
    return (total - comb(n - c, k)) / total


def pass_at_k_curve(n: int, c: int, ks: Iterable[int]) -> dict[int, float]:
    """pass@k for every k in ``ks`` (each validated as in :func:`pass_at_k`)."""
    return {int(k): pass_at_k(n, c, k) for k in ks}


def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... up to n, plus n itself if n is not a power of two."""
    n = _check_int(n, "n")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else [*ks, n]


def distinct_clusters(
    clusters: Sequence[int], correct: Sequence[bool] | None = None, *, degenerate: Iterable[int] = (0, 100)
) -> int:
    """Number of distinct non-degenerate cluster ids, among the correct samples if given."""
    deg = {int(d) for d in degenerate}
    ids = list(clusters)
    if correct is not None:
        if len(correct) != len(ids):
            raise ValueError(f"correct has length {len(correct)} but clusters has length {len(ids)}")
        ids = [c for c, ok in zip(ids, correct) if ok]
    return len({int(c) for c in ids} - deg)


# ---------------------------------------------------------------------------------------
# Test-time scaling figures of one problem (n samples), exact unless said otherwise
# ---------------------------------------------------------------------------------------


def _subset_max_weights(n: int, k: int) -> np.ndarray:
    """``w[i] = C(i, k-1) / C(n, k)``, i = 0..n-1: the chance that the i-th smallest of n items
    is the largest of a uniformly random k-subset. Shape ``(n,)``; sums to 1."""
    total = comb(n, k)
    return np.array([comb(i, k - 1) / total for i in range(n)])


def best_of_k(values: Sequence[float], k: int) -> float:
    """Expected best value of a uniformly random k-subset of the n ``values`` (exact).

    With the values sorted ascending, ``E[max] = sum_i v_(i) C(i-1, k-1) / C(n, k)`` (i from 1).
    For 0/1 rewards this equals :func:`pass_at_k`; for graded rewards (fraction of tests
    passed, rubric scores) it is the oracle best-of-k: what picking the best of k answers
    with the reward itself would score on average.
    """
    v = np.sort(np.asarray(values, dtype=float))
    if v.ndim != 1 or v.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    k = _check_int(k, "k")
    if not 1 <= k <= v.size:
        raise ValueError(f"k must be in [1, n] = [1, {v.size}], got {k}")
    return float(_subset_max_weights(v.size, k) @ v)


def distinct_at_k(correct_per_cluster: Sequence[int], n: int, k: int) -> float:
    """Expected number of distinct strategies among the correct answers of a random k-subset.

    ``correct_per_cluster[j]`` = correct samples (of n) in non-degenerate cluster j. A cluster
    shows up in a k-subset with probability ``pass_at_k(n, m_j, k)``, so the expectation is
    the sum of those (exact). At ``k = n`` it is the number of clusters with a correct sample.
    """
    counts = [_check_int(m, "correct_per_cluster entries") for m in correct_per_cluster]
    if sum(counts) > n:
        raise ValueError(f"correct_per_cluster sums to {sum(counts)} > n = {n}")
    return float(sum(pass_at_k(n, m, k) for m in counts if m > 0))


def keys_decide_correctness(keys: Sequence[int], correct: Sequence[bool], *, degenerate: Iterable[int] = (0, 100)) -> bool:
    """True when every non-degenerate key has one verdict (all its samples right, or all wrong).

    That is when majority voting over keys is meaningful: keys are final answers (or routes)
    whose correctness does not depend on which sample produced them.
    """
    deg = {int(d) for d in degenerate}
    verdict: dict[int, bool] = {}
    for key, ok in zip(keys, correct, strict=True):
        if key is None:
            return False
        if int(key) in deg:
            continue
        if verdict.setdefault(int(key), bool(ok)) != bool(ok):
            return False
    return True


def majority_at_k(
    keys: Sequence[int], correct: Sequence[bool], ks: Iterable[int], *, draws: int = 1000,
    rng: np.random.Generator | None = None, degenerate: Iterable[int] = (0, 100),
) -> dict[int, float]:
    """Accuracy of a majority vote over the keys of a random k-subset, for each k in ``ks``.

    Degenerate keys do not vote; a subset with no vote is wrong; ties are split evenly (the
    expectation over a uniform tie-break). Exact at ``k = n``; below n it is a Monte-Carlo
    estimate over ``draws`` random permutations (the first k items of a uniform permutation
    are a uniform k-subset), whose standard error is at most ``0.5 / sqrt(draws)``. Requires
    :func:`keys_decide_correctness`.
    """
    n = len(keys)
    if len(correct) != n or n == 0:
        raise ValueError(f"keys and correct must have the same non-zero length, got {n} and {len(correct)}")
    if not keys_decide_correctness(keys, correct, degenerate=degenerate):
        raise ValueError("majority@k needs keys that decide correctness (one verdict per key)")
    deg = {int(d) for d in degenerate}
    voters = sorted({int(k) for k in keys} - deg)
    index = {key: j for j, key in enumerate(voters)}
    J = len(voters)
    label = np.array([index.get(int(key), J) for key in keys])  # J: degenerate, never votes
    key_ok = np.zeros(J + 1, dtype=bool)
    for j, ok in zip(label, correct):
        key_ok[j] |= j < J and bool(ok)
    rng = rng if rng is not None else np.random.default_rng(0)
    out: dict[int, float] = {}
    drawn = None
    for k in (_check_int(k, "k") for k in ks):
        if not 1 <= k <= n:
            raise ValueError(f"k must be in [1, n] = [1, {n}], got {k}")
        if k == n:
            counts = np.bincount(label, minlength=J + 1)[None, :]
        else:
            if drawn is None:  # (draws, n) labels in uniformly random order, one row per draw
                drawn = label[rng.permuted(np.tile(np.arange(n), (draws, 1)), axis=1)]
                offsets = (np.arange(draws) * (J + 1))[:, None]
            counts = np.bincount((drawn[:, :k] + offsets).ravel(), minlength=draws * (J + 1)).reshape(draws, J + 1)
        out[k] = float(np.mean(_vote_accuracy(counts[:, :J], key_ok[:J])))
    return out


def _vote_accuracy(counts: np.ndarray, key_ok: np.ndarray) -> np.ndarray:
    """counts ``(draws, J)`` of votes per key -> ``(draws,)`` chance the winning key is correct."""
    if counts.shape[1] == 0:
        return np.zeros(counts.shape[0])
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    ties = tied.sum(axis=1)
    return np.where(ties > 0, (tied & key_ok).sum(axis=1) / np.maximum(ties, 1), 0.0)


# ---------------------------------------------------------------------------------------
# Uncertainty over problems
# ---------------------------------------------------------------------------------------


def standard_error(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Standard error of the mean over problems, ``std(ddof=1) / sqrt(P)``, column-wise.

    ``values``: shape ``(P,)`` or ``(P, K)`` (one row per problem). Returns shape ``()`` or
    ``(K,)``; NaN when P < 2 (one problem says nothing about the spread).
    """
    v = np.asarray(values, dtype=float)
    if v.shape[0] < 2:
        return np.full(v.shape[1:], np.nan)
    return v.std(axis=0, ddof=1) / np.sqrt(v.shape[0])


def bootstrap_standard_error(
    values: Sequence[float] | np.ndarray, *, draws: int = 1000, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Bootstrap standard error of the mean over problems (problems resampled with replacement).

    ``values``: shape ``(P,)`` or ``(P, K)``; every column uses the same resamples. Returns the
    standard deviation of the ``draws`` resampled means, shape ``()`` or ``(K,)``; NaN when P < 2.
    """
    v = np.asarray(values, dtype=float)
    p = v.shape[0]
    if p < 2:
        return np.full(v.shape[1:], np.nan)
    rng = rng if rng is not None else np.random.default_rng(0)
    weights = rng.multinomial(p, np.full(p, 1.0 / p), size=draws)  # (draws, P) resample counts
    means = np.tensordot(weights, v, axes=(1, 0)) / p
    return means.std(axis=0, ddof=1)


def coverage_gain(
    base: Sequence[dict], run: Sequence[dict], *, correct_threshold: float = 1.0, degenerate: Iterable[int] = (0, 100)
) -> dict[str, int]:
    """What a run solves that a base model did not, on the problems both were evaluated on.

    Each argument is a list of problem records (``problem_id``, ``rewards``, ``clusters``: one
    per sample, a reward ``None`` never correct). A problem is *solved* when one of its n
    samples is correct (pass@n > 0). Returns counts over the shared problems: ``problems``,
    ``solved`` (by the run), ``base_solved``, ``gained`` (solved by the run, not by the base),
    ``lost`` (the reverse), and ``new_strategies``: correct strategy ids of the run that the
    base never sampled on that problem, correct or not (degenerate ids excluded), summed over
    problems; ``new_strategy_problems`` counts the problems with at least one.
    """
    deg = set(degenerate)
    by_id = {p["problem_id"]: p for p in base}
    shared = [(by_id[p["problem_id"]], p) for p in run if p["problem_id"] in by_id]
    if not shared:
        raise ValueError("the run and the base share no problem: evaluate them on the same problems")

    def correct(p: dict) -> list[bool]:
        return [r is not None and r >= correct_threshold for r in p["rewards"]]

    out = dict.fromkeys(("problems", "solved", "base_solved", "gained", "lost", "new_strategies",
                         "new_strategy_problems"), 0)
    for b, p in shared:
        ok_b, ok_p = any(correct(b)), any(correct(p))
        sampled = {c for c in b.get("clusters") or [] if c is not None}
        found = {c for c, ok in zip(p.get("clusters") or [], correct(p)) if ok and c is not None and c not in deg}
        new = len(found - sampled)
        out["problems"] += 1
        out["solved"] += ok_p
        out["base_solved"] += ok_b
        out["gained"] += ok_p and not ok_b
        out["lost"] += ok_b and not ok_p
        out["new_strategies"] += new
        out["new_strategy_problems"] += new > 0
    return out
