"""PKPO (Walder & Karkhanis 2025, "Pass@K Policy Optimization", arXiv 2505.15201), exact by sorting.

For one group of N rollouts and a set size k, PKPO's gradient weights are

    s_i = (1 / C(N, k)) * sum over k-subsets G holding i of max_{j in G} r_j  = (k/N) E[max_G | i in G],

an unbiased estimate of the gradient of maxg@k (pass@k for 0/1 rewards). Two baselines:

``loo_minus_one`` (the paper's lower-variance estimator)
    A_i = (1 / C(N, k)) * sum over k-subsets G holding i of [max_G r - max_{G \\ {i}} r]
        = s_i - (k/N) * rho_{-i}(k-1),
    where ``rho_{-i}(m)`` is the mean, over the m-subsets H of the other N-1 rollouts, of max_H r.
    Never negative: a rollout earns only where it is the strict best of its set.
``loo``
    A_i = s_i - (1/(N-1)) * sum_{j != i} s_j^{(-i)} = s_i - (k/(N-1)) * rho_{-i}(k),
    the mean of the other rollouts' weights computed on the group without i.

Both are O(N log N): sort the rewards; the best of a uniform m-subset of the N-1 others is
their j-th best with probability ``C(N-2-j, m-1) / C(N-1, m)``, and the others of the rollout
at rank q are the sorted rewards with position q removed. docs/estimators.md has the
derivation and how the Poly-EPO authors' code scales it (by N/k, then a leave-one-out mean).
"""

from __future__ import annotations

import numpy as np

from ._checks import check_rewards, check_set_size
from .closed_form import pass_at_k_conditional_means, top_position_probs

PKPO_VARIANTS = ("loo_minus_one", "loo")


def pkpo_advantages(rewards, clusters=None, set_size: int = 4, *, variant: str = "loo_minus_one") -> np.ndarray:
    """PKPO: maxg@k gradient weights with a leave-one-out baseline, exact (no enumeration).

    Args:
        rewards: ``[N]`` finite rewards, binary or real.
        clusters: accepted and ignored.
        set_size: k, in [2, N] for ``loo_minus_one``, [1, N-1] for ``loo``.
        variant: ``loo_minus_one`` (default; baseline = best of the other k-1 set members) or
            ``loo`` (baseline = the mean weight of the others, computed without i).

    Returns:
        ``float64[N]``; ``loo_minus_one`` advantages are >= 0.
    """
    r = check_rewards(rewards)
    N = r.size
    k = check_set_size(set_size, N)
    if variant not in PKPO_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(PKPO_VARIANTS)}; got {variant!r}")
    order = np.argsort(-r, kind="stable")
    v = r[order]  # descending
    out = np.empty(N)
    if variant == "loo_minus_one":
        if k < 2:
            raise ValueError("variant='loo_minus_one' needs set_size >= 2 (its baseline is the best of the "
                             "other k-1 members of a set); use variant='loo' for set_size=1")
        # A at rank q = (k/N) sum_{j >= q} p_j (v_q - v_{j+1}): only others ranked below q count.
        p = top_position_probs(N, k)  # best of a (k-1)-subset of the N-1 others is their j-th best
        mass = np.concatenate((np.cumsum(p[::-1])[::-1], [0.0]))
        below = np.concatenate((np.cumsum((p * v[1:])[::-1])[::-1], [0.0]))
        out[order] = (k / N) * (v * mass - below)
        return out
    if k > N - 1:
        raise ValueError(f"variant='loo' needs set_size <= N-1 = {N - 1} (its baseline averages k-subsets "
                         f"of the other N-1 rollouts); got set_size={k}")
    s = (k / N) * pass_at_k_conditional_means(r, k)
    P = top_position_probs(N, k + 1)  # best of a k-subset of the N-1 others is their j-th best
    above = np.concatenate(([0.0], np.cumsum(P * v[:-1])))  # others ranked above q: v[j], j < q
    rest = np.concatenate((np.cumsum((P * v[1:])[::-1])[::-1], [0.0]))  # ranked below: v[j+1], j >= q
    rho = np.empty(N)
    rho[order] = above + rest
    return s - (k / (N - 1)) * rho
