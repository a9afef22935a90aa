"""Closed-form marginal set advantages: counting instead of enumerating subsets.

For a group of N rollouts, a set objective f and set size n, the marginal set advantage of
Algorithm 1 (seed 002) is ``A_i = sum over n-subsets G containing i of (f(G) - mean_G f)``.
Because ``C(N-1, n-1) / C(N, n) = n / N``, this equals

    A_i = C(N-1, n-1) * (m_i - mean_j m_j),     m_i = E[f(G) | i in G],

with G uniform over the n-subsets of {1..N}. ``reduction="mean"`` drops the binomial factor.
So everything reduces to the conditional means m_i, which this module computes exactly by
counting. The derivations, step by step, are in docs/closed-form.md.

Shapes: every function takes one group, ``rewards[N]`` (and ``clusters[N]``), and returns
``float64[N]``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ._checks import (
    check_clusters,
    check_degenerate,
    check_min_distinct,
    check_reduction,
    check_rewards,
    check_set_size,
)


def comb(a: int, b: int) -> int:
    """Binomial coefficient C(a, b), zero outside 0 <= b <= a (exact integer)."""
    if b < 0 or a < b or a < 0:
        return 0
    return math.comb(a, b)


@lru_cache(maxsize=256)
def _pool_tables(N: int, n: int) -> tuple[list[float], list[float]]:
    """``(e2, s12)`` for P = 0..N: ``e2[P] = C(P-2, n-2) / C(N-1, n-1)`` and
    ``s12[P] = (C(P-1, n-1) - C(P-2, n-2)) / C(N-1, n-1)``.

    For a pool of P rollouts that holds rollout i and has total reward R_pool, the reward
    sums of the n-subsets of the pool that contain i add up to
    ``C(P-1, n-1) r_i + C(P-2, n-2) (R_pool - r_i)``; divided by C(N-1, n-1) that is
    ``s12[P] r_i + e2[P] R_pool``. Python integers make every ratio correctly rounded,
    whatever the size of the binomials.
    """
    total = comb(N - 1, n - 1)
    e2 = [comb(P - 2, n - 2) / total for P in range(N + 1)]
    s12 = [(comb(P - 1, n - 1) - comb(P - 2, n - 2)) / total for P in range(N + 1)]
    return e2, s12


def _marginal(cond_means: np.ndarray, N: int, n: int, reduction: str) -> np.ndarray:
    adv = cond_means - cond_means.mean()
    if reduction == "sum":
        scale = comb(N - 1, n - 1)
        if scale > 1e300:
            raise OverflowError(
                f"reduction='sum' multiplies by C(N-1, n-1) = C({N - 1}, {n - 1}), which does "
                "not fit in a float64; use reduction='mean'"
            )
        adv = adv * float(scale)
    return adv


# ---------------------------------------------------------------------------------------
# Polychromic objective
# ---------------------------------------------------------------------------------------


def poly_epo_advantages(
    rewards,
    clusters,
    set_size: int = 4,
    *,
    degenerate=(0, 100),
    min_distinct: int = 2,
    reduction: str = "sum",
) -> np.ndarray:
    """Poly-EPO marginal set advantages of one group, in closed form.

    Exactly (to float rounding) Algorithm 1 of seed 002 run over all C(N, n) subsets:
    ``f(G) = mean reward of G * d(G)``, ``d(G) = |U|/n`` if ``|U| >= min_distinct`` else 0,
    ``U`` = distinct cluster ids of G not in ``degenerate``; ``A_G = f(G) - mean_G f``;
    ``A_i`` = sum (``reduction="sum"``) or mean (``"mean"``) of ``A_G`` over the sets
    containing rollout i. Cost O(N + K) for ``min_distinct <= 2`` (K = number of clusters),
    O(K * n^2 * min_distinct^2) above that; no subset is ever listed.

    Args:
        rewards: ``[N]`` finite rewards (binary or real).
        clusters: ``[N]`` integer strategy ids.
        set_size: n, in [1, N].
        degenerate: ids that count as no strategy at all (gibberish, empty, off-task).
        min_distinct: sets with fewer distinct non-degenerate ids get d = 0. The default 2
            is seed 002's ``|U| > 1`` gate; 1 (or 0) disables the gate.
        reduction: ``"sum"`` (seed 002, eq. 3) or ``"mean"`` (the paper authors' code).

    Returns:
        ``float64[N]`` advantages; they sum to 0.

    ``min_distinct=1, degenerate=(100,), reduction="mean"`` reproduces the paper authors'
    released variant. ``reduction="mean"`` equals ``"sum"`` divided by C(N-1, n-1).
    """
    r = check_rewards(rewards)
    N = r.size
    c = check_clusters(clusters, N)
    n = check_set_size(set_size, N)
    deg = check_degenerate(degenerate)
    m = check_min_distinct(min_distinct)
    check_reduction(reduction)
    cond = polychromic_conditional_means(r, c, n, deg, m)
    return _marginal(cond, N, n, reduction)


def polychromic_conditional_means(
    r: np.ndarray, c: np.ndarray, n: int, degenerate: np.ndarray, min_distinct: int
) -> np.ndarray:
    """``m_i = E[f_poly(G) | i in G]`` for validated inputs (see docs/closed-form.md).

    ``f(G) = R_G * (|U_G| - h(|U_G|)) / n^2`` with ``R_G`` the reward sum of G and
    ``h(u) = u if u < min_distinct else 0``. The ``|U_G|`` part is a sum over clusters of
    "G hits cluster l" indicators (part 1); the ``h`` part needs the sets with fewer than
    ``min_distinct`` distinct clusters (part 2). Within one cluster (and among the
    degenerate rollouts) m_i is affine in r_i, so the work is a loop over clusters; plain
    Python beats NumPy's per-call overhead at the group sizes used in training.
    """
    N = r.size
    e2, s12 = _pool_tables(N, n)
    deg = set(degenerate.tolist())
    rl, cl = r.tolist(), c.tolist()
    size: dict[int, int] = {}
    rsum: dict[int, float] = {}
    D, R_D = 0, 0.0
    for ri, ci in zip(rl, cl):
        if ci in deg:
            D += 1
            R_D += ri
        else:
            size[ci] = size.get(ci, 0) + 1
            rsum[ci] = rsum.get(ci, 0.0) + ri
    K = len(size)
    R = R_D + sum(rsum.values())

    # T(P, R_pool)_i = s12[P] r_i + e2[P] R_pool: reward sums of the sets that hold i inside a
    # pool of P rollouts, divided by C(N-1, n-1). Part 1:
    # E[R_G |U_G| | i in G] = K T(N, R) - sum over clusters l not holding i of T(N - m_l, R - R_l).
    s1 = {k: s12[N - m] for k, m in size.items()}
    s2 = {k: e2[N - m] * (R - rsum[k]) for k, m in size.items()}
    slope_d = K * s12[N] - sum(s1.values())  # degenerate rollouts: no cluster to add back
    const_d = K * e2[N] * R - sum(s2.values())
    slope = {k: s1[k] + slope_d for k in size}  # add back the cluster that holds i
    const = {k: s2[k] + const_d for k in size}
    if min_distinct == 2:
        # Part 2, |U_G| = 1. i in cluster k: G lies inside k plus the degenerate rollouts.
        # i degenerate: G lies inside the degenerate rollouts plus one cluster l, and hits l.
        t1_sum = t2_sum = 0.0
        for k, m in size.items():
            t1 = s12[m + D]
            t2 = e2[m + D] * (rsum[k] + R_D)
            slope[k] -= t1
            const[k] -= t2
            t1_sum += t1
            t2_sum += t2
        slope_d -= t1_sum - K * s12[D]
        const_d -= t2_sum - K * e2[D] * R_D
    out = np.array([
        slope_d * ri + const_d if ci in deg else slope[ci] * ri + const[ci]
        for ri, ci in zip(rl, cl)
    ])
    if min_distinct > 2:
        out -= _low_distinct_term(rl, cl, deg, size, rsum, n, min_distinct)
    return out / (n * n)


def _low_distinct_term(
    rl: list[float], cl: list[int], deg: set[int], size: dict[int, int], rsum: dict[int, float],
    n: int, min_distinct: int,
) -> np.ndarray:
    """``E[R_G * |U_G| * 1(|U_G| < min_distinct) | i in G]`` for every i, by generating functions.

    Polynomials in x (rollouts chosen, truncated at x^n) and y (distinct clusters hit,
    truncated at y^(min_distinct-1)), each coefficient a pair (number of subsets, sum of
    their reward sums). Cluster l contributes ``1 + y * sum_{t>=1} x^t (C(m_l, t),
    C(m_l-1, t-1) R_l)``; the degenerate rollouts ``sum_t x^t (C(D, t), C(D-1, t-1) R_D)``.
    Leave-one-cluster-out products come from prefix and suffix products. Every chosen
    rollout carries a factor lam = n/N so that large N stays inside float64.
    """
    N = len(rl)
    U = min_distinct
    lam = n / N
    loglam = math.log(lam)

    def sc(a: int, b: int) -> float:  # C(a, b) * lam^b
        if b < 0 or a < b or a < 0:
            return 0.0
        return math.exp(
            math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1) + b * loglam
        )

    def pool(size: int, rsum: float, y: int) -> tuple[np.ndarray, np.ndarray]:
        V = np.zeros((n + 1, U))
        W = np.zeros((n + 1, U))
        V[0, 0] = 1.0
        for t in range(1, min(size, n) + 1):
            V[t, y] = sc(size, t)
            W[t, y] = sc(size - 1, t - 1) * lam * rsum
        return V, W

    def conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.zeros((n + 1, U))
        for u1 in range(U):
            if a[:, u1].any():
                for u2 in range(U - u1):
                    if b[:, u2].any():
                        out[:, u1 + u2] += np.convolve(a[:, u1], b[:, u2])[: n + 1]
        return out

    def mul(A, B):
        return conv(A[0], B[0]), conv(A[0], B[1]) + conv(A[1], B[0])

    def own_pool(size: int, rsum: float, qV: np.ndarray, qW: np.ndarray) -> tuple[float, float]:
        # i's own pool gives t rollouts, i included: C(size-1, t-1) subsets whose reward sums
        # add up to (C(size-1, t-1) - C(size-2, t-2)) r_i + C(size-2, t-2) R_pool.
        slope = const = 0.0
        for t in range(1, min(size, n) + 1):
            cv = sc(size - 1, t - 1) * lam
            c2 = sc(size - 2, t - 2) * lam * lam
            const += cv * qW[n - t] + c2 * rsum * qV[n - t]
            slope += (cv - c2) * qV[n - t]
        return slope, const

    D = sum(ci in deg for ci in cl)
    R_D = sum(ri for ri, ci in zip(rl, cl) if ci in deg)
    one = pool(0, 0.0, 0)
    keys = list(size)
    factors = [pool(size[k], rsum[k], 1) for k in keys]
    prefix = [pool(D, R_D, 0)]  # the degenerate rollouts are free for every i outside them
    for f in factors:
        prefix.append(mul(prefix[-1], f))
    suffix = [one]
    for f in reversed(factors):
        suffix.append(mul(suffix[-1], f))
    suffix.reverse()  # suffix[j] = product of factors j..K-1

    w = np.arange(U, dtype=float)  # weight u for u < min_distinct
    coef: dict[int, tuple[float, float]] = {}
    for j, k in enumerate(keys):
        V, W = mul(prefix[j], suffix[j + 1])
        # Cluster k is hit by i itself, so a set with u distinct has u-1 among the others.
        coef[k] = own_pool(size[k], rsum[k], V[:, :-1] @ w[1:], W[:, :-1] @ w[1:])
    if D:
        V, W = suffix[0]  # every cluster, no degenerate pool
        for d in deg:
            coef[d] = own_pool(D, R_D, V @ w, W @ w)
    out = np.array([coef[ci][0] * ri + coef[ci][1] for ri, ci in zip(rl, cl)])
    return out / (sc(N - 1, n - 1) * lam)


# ---------------------------------------------------------------------------------------
# pass@k objective: f(G) = max reward in G
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def top_position_probs(N: int, n: int) -> np.ndarray:
    """p[j] = P(the best of a random (n-1)-subset of N-1 ranked items is item j), j = 0..N-2."""
    total = comb(N - 1, n - 1)
    return np.array([comb(N - 2 - j, n - 2) / total for j in range(N - 1)])


PASS_AT_K_SCALES = ("none", "std")

#: Added to the std in ``scale="std"`` (the value of Chen et al.'s code).
STD_EPSILON = 1e-6


def pass_at_k_conditional_means(r: np.ndarray, n: int) -> np.ndarray:
    """``m_i = E[max_{j in G} r_j | i in G]`` over uniform n-subsets G, exact, by sorting.

    Given i in G, the other n-1 members are a uniform (n-1)-subset of the other N-1 rollouts,
    whose best member is the j-th best of them with probability ``C(N-2-j, n-2) / C(N-1, n-1)``.
    """
    N = r.size
    if n == 1:
        return r.copy()
    order = np.argsort(-r, kind="stable")
    v = r[order]
    p = top_position_probs(N, n)
    # Rollout at rank q (0-based): the others ranked above it are v[0..q-1] (>= r_i);
    # the others ranked below are all <= r_i, so max(r_i, them) = r_i.
    above = np.concatenate(([0.0], np.cumsum(p * v[:-1])))  # sum_{j<q} p[j] v[j]
    below = np.concatenate((np.cumsum(p[::-1])[::-1], [0.0]))  # sum_{j>=q} p[j]
    cond = np.empty(N)
    cond[order] = above + v * below
    return cond


def pass_at_k_advantages(
    rewards, clusters=None, set_size: int = 4, *, reduction: str = "sum", scale: str = "none"
) -> np.ndarray:
    """Marginal set advantages for ``f(G) = max_{i in G} r_i`` (pass@k for binary rewards).

    Exact, O(N log N), by sorting (:func:`pass_at_k_conditional_means`). ``clusters`` is
    accepted and ignored.

    ``scale="std"`` divides by ``sqrt(f (1 - f)) + 1e-6``, f = the group's mean over all
    n-subsets of the max reward (its pass@n estimate), as Chen et al. 2025 ("Pass@k Training",
    code in ``RUCAIBox/Passk_Training``); it needs rewards in [0, 1]. With ``reduction="mean"``
    and 0/1 rewards this is their advantage exactly (docs/estimators.md).
    """
    r = check_rewards(rewards)
    N = r.size
    n = check_set_size(set_size, N)
    check_reduction(reduction)
    if scale not in PASS_AT_K_SCALES:
        raise ValueError(f"scale must be one of {', '.join(PASS_AT_K_SCALES)}; got {scale!r}")
    if scale == "std" and (r.min() < 0.0 or r.max() > 1.0):
        raise ValueError(f"scale='std' needs rewards in [0, 1] (f is a pass rate); got rewards in "
                         f"[{r.min():g}, {r.max():g}]")
    cond = pass_at_k_conditional_means(r, n)
    adv = _marginal(cond, N, n, reduction)
    if scale == "std":
        f = float(cond.mean())  # each n-subset is counted n times: the mean over sets of max
        adv = adv / (math.sqrt(max(f * (1.0 - f), 0.0)) + STD_EPSILON)
    return adv
