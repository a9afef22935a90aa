"""The general set-RL recipe: score sets of rollouts with any objective, then marginalise.

For one group of N rollouts: pick subsets G of size n (all C(N, n) of them, or K sampled
uniformly without replacement), score each with a set objective ``f``, take the set
advantage ``A_G = f(G) - mean over the picked sets of f``, and give rollout i the sum (or
mean) of ``A_G`` over the picked sets that contain it (Algorithm 1 of seed 002, for any f).

A set objective is vectorised: ``f(rewards[S, n], clusters[S, n]) -> float[S]``, one row per
set. Built-in objectives live in :data:`SET_OBJECTIVES`; register your own with
``@SET_OBJECTIVES.register("name")`` or pass the callable itself.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from ..registry import Registry
from ._checks import (
    check_clusters,
    check_degenerate,
    check_min_distinct,
    check_reduction,
    check_rewards,
    check_set_size,
)

SetObjective = Callable[..., np.ndarray]
SET_OBJECTIVES: Registry[SetObjective] = Registry("set objective")

#: Above this many subsets, "all" is refused (use sampled subsets or a closed form).
MAX_ENUMERATED_SETS = 5_000_000


@SET_OBJECTIVES.register("polychromic")
def polychromic_objective(
    rewards: np.ndarray, clusters: np.ndarray, *, degenerate=(0, 100), min_distinct: int = 2
) -> np.ndarray:
    """``f(G) = mean(r_G) * d(G)``, ``d = |U|/n`` if ``|U| >= min_distinct`` else 0 (eq. 1-2)."""
    deg = check_degenerate(degenerate)
    n = rewards.shape[1]
    s = np.sort(clusters, axis=1)
    valid = ~np.isin(s, deg)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    distinct = (new & valid).sum(axis=1)
    d = np.where(distinct >= min_distinct, distinct / n, 0.0)
    return rewards.mean(axis=1) * d


@SET_OBJECTIVES.register("mean_reward")
def mean_reward_objective(rewards: np.ndarray, clusters: np.ndarray | None = None) -> np.ndarray:
    """``f(G) = mean(r_G)``: its marginal advantage is GRPO's, scaled (docs/closed-form.md)."""
    return rewards.mean(axis=1)


@SET_OBJECTIVES.register("max_reward")
def max_reward_objective(rewards: np.ndarray, clusters: np.ndarray | None = None) -> np.ndarray:
    """``f(G) = max(r_G)``: pass@n of the set for binary rewards."""
    return rewards.max(axis=1)


@lru_cache(maxsize=32)
def all_subsets(N: int, n: int) -> np.ndarray:
    """All C(N, n) subsets of range(N) as an ``int64[C(N, n), n]`` array (cached, read-only)."""
    total = math.comb(N, n)
    if total > MAX_ENUMERATED_SETS:
        raise ValueError(
            f"C({N}, {n}) = {total} subsets is too many to enumerate "
            f"(limit {MAX_ENUMERATED_SETS}); pass subsets=K to sample K of them, or use a "
            "closed-form estimator"
        )
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(N), n)),
                       dtype=np.int64, count=total * n)
    out = flat.reshape(total, n)
    out.setflags(write=False)
    return out


def sample_subsets(N: int, n: int, k: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """``k`` distinct n-subsets of range(N), uniform without replacement, as ``int64[k', n]``.

    ``k' = min(k, C(N, n))``; rows are sorted within, in random order. Seeded: the same
    ``seed`` gives the same subsets.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"subsets must be 'all' or a positive integer count, got {k!r}")
    rng = np.random.default_rng(seed)
    total = math.comb(N, n)
    if k >= total:
        return all_subsets(N, n).copy()
    if total <= 200_000:
        return all_subsets(N, n)[np.sort(rng.choice(total, size=k, replace=False))][rng.permutation(k)]
    seen: set[tuple[int, ...]] = set()
    rows: list[tuple[int, ...]] = []
    while len(rows) < k:
        draw = np.sort(np.argsort(rng.random((2 * (k - len(rows)), N)), axis=1)[:, :n], axis=1)
        for row in map(tuple, draw.tolist()):
            if row not in seen:
                seen.add(row)
                rows.append(row)
                if len(rows) == k:
                    break
    return np.asarray(rows, dtype=np.int64)


def marginal_from_sets(
    set_scores: np.ndarray, subsets: np.ndarray, N: int, *, reduction: str = "sum",
    total_sets: int | None = None,
) -> np.ndarray:
    """Per-rollout marginal advantages from set scores ``f[S]`` of ``subsets[S, n]``.

    ``A_G = f_G - mean(f)``; ``A_i = sum_{G in subsets, i in G} A_G`` (``"sum"``), rescaled by
    ``total_sets / S`` when only S of ``total_sets`` subsets were scored (so that it estimates
    the all-subsets sum), or the mean of ``A_G`` over the picked sets holding i (``"mean"``;
    0 for a rollout in none of them).
    """
    check_reduction(reduction)
    S, n = subsets.shape
    set_adv = set_scores - set_scores.mean()
    summed = np.bincount(subsets.ravel(), weights=np.repeat(set_adv, n), minlength=N)
    if reduction == "mean":
        counts = np.bincount(subsets.ravel(), minlength=N)
        return np.divide(summed, counts, out=np.zeros(N), where=counts > 0)
    if total_sets is not None and total_sets != S:
        summed *= total_sets / S
    return summed


def set_rl_advantages(
    rewards,
    clusters=None,
    set_size: int = 4,
    *,
    objective: str | SetObjective = "polychromic",
    subsets: str | int = "all",
    seed: int = 0,
    reduction: str = "sum",
    degenerate=(0, 100),
    min_distinct: int = 2,
) -> np.ndarray:
    """Marginal set advantages of one group for any set objective, by listing sets.

    Args:
        rewards: ``[N]`` rewards.
        clusters: ``[N]`` cluster ids (required by objectives that read them).
        set_size: n, in [1, N].
        objective: a name in :data:`SET_OBJECTIVES` or a vectorised callable
            ``f(rewards[S, n], clusters[S, n]) -> [S]``.
        subsets: ``"all"`` for every C(N, n) subset, or K to sample K distinct subsets
            uniformly without replacement (seeded by ``seed``).
        reduction: ``"sum"`` or ``"mean"`` over the sets holding each rollout.
        degenerate, min_distinct: passed to the ``"polychromic"`` objective.

    Returns:
        ``float64[N]``. With ``subsets="all"`` and ``objective="polychromic"`` this is the
        literal Algorithm 1, the reference that the closed form is tested against.
    """
    r = check_rewards(rewards)
    N = r.size
    n = check_set_size(set_size, N)
    check_reduction(reduction)
    if clusters is None:
        c = np.zeros(N, dtype=np.int64)
        if objective == "polychromic":
            check_clusters(None, N)
    else:
        c = check_clusters(clusters, N)
    if isinstance(objective, str):
        fn = SET_OBJECTIVES.get(objective)
        if objective == "polychromic":
            deg, md = check_degenerate(degenerate), check_min_distinct(min_distinct)
            fn = lambda rr, cc, _f=fn: _f(rr, cc, degenerate=deg, min_distinct=md)  # noqa: E731
    elif callable(objective):
        fn = objective
    else:
        raise ValueError(f"objective must be a registered name or a callable, got {objective!r}")
    if subsets == "all":
        idx = all_subsets(N, n)
    elif isinstance(subsets, str):
        raise ValueError(f"subsets must be 'all' or a positive integer count, got {subsets!r}")
    else:
        idx = sample_subsets(N, n, subsets, seed)
    scores = np.asarray(fn(r[idx], c[idx]), dtype=np.float64)
    if scores.shape != (idx.shape[0],):
        raise ValueError(
            f"set objective returned shape {scores.shape}; expected ({idx.shape[0]},), "
            "one score per set"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("set objective returned non-finite scores")
    return marginal_from_sets(scores, idx, N, reduction=reduction, total_sets=math.comb(N, n))
