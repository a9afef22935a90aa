"""Per-group diversity figures that the trainer logs (pure NumPy)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def group_cluster_stats(clusters, correct, *, degenerate: Iterable[int] = (0, 100)) -> dict[str, float]:
    """Diversity of one group.

    Args:
        clusters: ``[N]`` cluster ids.
        correct: ``[N]`` booleans.
        degenerate: ids that are no real strategy.

    Returns:
        ``clusters_distinct`` (distinct non-degenerate ids), ``clusters_distinct_correct`` and
        ``clusters_distinct_incorrect`` (the same among correct / incorrect rollouts), and
        ``degenerate_frac`` (share of rollouts with a degenerate id).
    """
    c = np.asarray(clusters)
    ok = np.asarray(correct, dtype=bool)
    deg = np.isin(c, list(degenerate))
    real = c[~deg]
    return {
        "clusters_distinct": float(np.unique(real).size),
        "clusters_distinct_correct": float(np.unique(c[ok & ~deg]).size),
        "clusters_distinct_incorrect": float(np.unique(c[~ok & ~deg]).size),
        "degenerate_frac": float(deg.mean()) if c.size else 0.0,
    }
