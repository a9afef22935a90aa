"""Per-rollout diversity reweighting by strategy-cluster size: DARLING and uniqueness-aware RL.

Both read one group's cluster ids, count how many rollouts share each rollout's cluster
(``m_i``, degenerate ids excluded from strategies) and reshape a group-relative advantage with
it; neither looks at sets. docs/estimators.md says what each reproduces and what it chooses.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_clusters, check_degenerate, check_finite_number, check_rewards
from .baselines import center

UNIQUENESS_REWEIGHT = ("positive", "all")


def cluster_sizes(clusters: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """``m[i]`` = number of rollouts (among those where ``within`` is True) sharing i's cluster id."""
    ids, inverse = np.unique(clusters, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=None if within is None else within.astype(np.float64),
                         minlength=ids.size)
    return counts[inverse.ravel()].astype(np.float64)


def darling_advantages(
    rewards,
    clusters,
    *,
    floor: float = 0.1,
    correct_only: bool = False,
    degenerate=(0, 100),
) -> np.ndarray:
    """DARLING (Li et al. 2025, arXiv 2509.02534): ``w_i = r_i * max(floor, (N - m_i)/(N - 1))``, A = w - mean w.

    ``m_i`` is the size of i's cluster among the group's N rollouts; a degenerate rollout gets
    the floor. No std scaling (the authors' math recipe runs verl's GRPO with
    ``norm_adv_by_std_in_grpo=False`` on the multiplied reward). ``correct_only=True`` is the
    authors' ``partition_correct``: only rollouts with reward > 0 are partitioned, ``N`` and
    ``m_i`` count correct rollouts only, the others get the floor, and a group with at most one
    correct rollout gets the floor everywhere. A group of one has advantage 0.
    """
    r = check_rewards(rewards)
    c = check_clusters(clusters, r.size)
    lo = check_finite_number(floor, "floor")
    if not 0.0 <= lo <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {lo}")
    deg = np.isin(c, check_degenerate(degenerate))
    N = r.size
    if N < 2:
        return np.zeros(N)
    if correct_only:
        correct = r > 0
        C = int(correct.sum())
        div = np.full(N, lo)
        if C > 1:
            m = cluster_sizes(c, correct)
            div[correct] = (C - m[correct]) / (C - 1)
    else:
        div = (N - cluster_sizes(c)) / (N - 1)
    div = np.maximum(div, lo)
    div[deg] = lo
    w = r * div
    return w - w.mean()


def uniqueness_advantages(
    rewards,
    clusters,
    *,
    alpha: float = 1.0,
    reweight: str = "positive",
    scale_by_std: bool = True,
    epsilon: float = 1e-6,
    degenerate=(0, 100),
) -> np.ndarray:
    """Uniqueness-aware RL (Hu et al. 2026, arXiv 2601.08763): the GRPO advantage times ``m_i ** -alpha``.

    ``m_i`` is the size of i's strategy cluster among the group's N rollouts: a rollout alone
    in its cluster keeps its advantage, one of m in a cluster gets ``1/m^alpha`` of it.
    ``reweight="positive"`` (default) reweights only rollouts above the group mean (the correct
    ones, for 0/1 rewards), so a rare *wrong* strategy is not punished harder than a common one;
    ``"all"`` reweights every rollout. Degenerate rollouts keep weight 1. The advantages are not
    re-centred. ``scale_by_std=False`` starts from Dr.GRPO instead of GRPO.
    """
    r = check_rewards(rewards)
    c = check_clusters(clusters, r.size)
    a = check_finite_number(alpha, "alpha")
    if a < 0:
        raise ValueError(f"alpha must be >= 0, got {a}")
    if reweight not in UNIQUENESS_REWEIGHT:
        raise ValueError(f"reweight must be one of {', '.join(UNIQUENESS_REWEIGHT)}; got {reweight!r}")
    adv = center(r, bool(scale_by_std), check_finite_number(epsilon, "epsilon"))
    w = cluster_sizes(c) ** -a
    w[np.isin(c, check_degenerate(degenerate))] = 1.0
    if reweight == "positive":
        w[adv <= 0] = 1.0
    return adv * w
