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
