"""Per-rollout baselines of the GRPO family, in the shared estimator signature.

Each takes one group, ``rewards[N]`` (and ``clusters[N]`` where it uses them), and returns
``float64[N]``.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_clusters, check_degenerate, check_finite_number, check_rewards


def center(r: np.ndarray, scale_by_std: bool, epsilon: float) -> np.ndarray:
    """``r - mean r``, divided by ``std r + epsilon`` (sample std; 0 for one rollout) if ``scale_by_std``."""
    adv = r - r.mean()
    if scale_by_std:
        std = float(r.std(ddof=1)) if r.size > 1 else 0.0
        adv = adv / (std + epsilon)
    return adv


def grpo_advantages(rewards, clusters=None, *, scale_by_std: bool = True, epsilon: float = 1e-6) -> np.ndarray:
    """GRPO (Shao et al. 2024, arXiv 2402.03300): ``(r_i - mean r) / (std r + epsilon)``.

    ``std`` is the sample standard deviation (ddof=1, as torch.std in TRL and verl).
    ``scale_by_std=False`` gives Dr.GRPO. ``clusters`` is ignored.
    """
    r = check_rewards(rewards)
    return center(r, bool(scale_by_std), check_finite_number(epsilon, "epsilon"))


def dr_grpo_advantages(rewards, clusters=None) -> np.ndarray:
    """Dr.GRPO (Liu et al. 2025, arXiv 2503.20783): ``r_i - mean r``, no std scaling.

    The GRPO baseline of the Poly-EPO paper and seed 002. ``clusters`` is ignored.
    """
    r = check_rewards(rewards)
    return r - r.mean()


def rloo_advantages(rewards, clusters=None) -> np.ndarray:
    """RLOO (Ahmadian et al. 2024, arXiv 2402.14740): ``r_i - mean_{j != i} r_j``.

    Equals ``N / (N - 1) * (r_i - mean r)``; needs N >= 2. ``clusters`` is ignored.
    """
    r = check_rewards(rewards)
    if r.size < 2:
        raise ValueError("rloo needs a group of at least N=2 rollouts (leave-one-out mean)")
    return (r - r.mean()) * (r.size / (r.size - 1))


def diversity_bonus(clusters, *, degenerate=(0, 100)) -> np.ndarray:
    """GRPO+DIV bonus ``(N / |cluster of i| - 1) / (N - 1)``, in [0, 1]; 0 for degenerate ids.

    1 for a rollout alone in its cluster, 0 when every rollout shares its cluster.
    """
    c = check_clusters(clusters, np.asarray(clusters).size)
    N = c.size
    if N < 2:
        return np.zeros(N)
    _, inverse, counts = np.unique(c, return_inverse=True, return_counts=True)
    bonus = (N / counts[inverse] - 1.0) / (N - 1)
    bonus[np.isin(c, check_degenerate(degenerate))] = 0.0
    return bonus


def grpo_div_advantages(
    rewards,
    clusters,
    *,
    weight: float = 1.0,
    degenerate=(0, 100),
    scale_by_std: bool = False,
    epsilon: float = 1e-6,
) -> np.ndarray:
    """GRPO+DIV, the Poly-EPO paper's diversity baseline: centre ``r_i + weight * bonus_i``.

    ``bonus_i = (N / |cluster of i| - 1) / (N - 1)`` (0 for degenerate ids) is added to the
    reward before centring; no std scaling by default (Dr.GRPO normalisation, as the paper).
    """
    r = check_rewards(rewards)
    check_clusters(clusters, r.size)
    w = check_finite_number(weight, "weight")
    shaped = r + w * diversity_bonus(clusters, degenerate=degenerate)
    return center(shaped, bool(scale_by_std), check_finite_number(epsilon, "epsilon"))
