"""Agglomerative clustering with a distance threshold, in NumPy (groups are small: N <= ~256).

Starts from singletons and repeatedly merges the two closest clusters while their linkage
distance is <= ``threshold``. ``average`` (UPGMA), ``complete`` and ``single`` linkage, the
same definitions as ``scipy.cluster.hierarchy``. O(N^3), fine for the group sizes of RL.
"""

from __future__ import annotations

import numpy as np

LINKAGES = ("average", "complete", "single")


def agglomerative(distances: np.ndarray, threshold: float, linkage: str = "average") -> list[int]:
    """Cluster labels 0..K-1 (in order of first appearance) from a distance matrix.

    Args:
        distances: ``[N, N]`` symmetric, non-negative, zero diagonal.
        threshold: merge while the closest pair of clusters is at most this far apart.
        linkage: ``average`` (mean pairwise distance), ``complete`` (max), ``single`` (min).
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {', '.join(LINKAGES)}, got {linkage!r}")
    d = np.asarray(distances, dtype=float)
    n = d.shape[0]
    if d.ndim != 2 or d.shape[1] != n:
        raise ValueError(f"distances must be a square [N, N] matrix, got shape {d.shape}")
    if n == 0:
        return []
    members: list[list[int]] = [[i] for i in range(n)]
    link = d.copy()
    np.fill_diagonal(link, np.inf)
    active = np.ones(n, dtype=bool)
    while active.sum() > 1:
        masked = np.where(active[:, None] & active[None, :], link, np.inf)
        a, b = np.unravel_index(int(np.argmin(masked)), masked.shape)
        if masked[a, b] > threshold:
            break
        a, b = min(a, b), max(a, b)
        size_a, size_b = len(members[a]), len(members[b])
        if linkage == "average":
            row = (link[a] * size_a + link[b] * size_b) / (size_a + size_b)
        elif linkage == "complete":
            row = np.maximum(link[a], link[b])
        else:
            row = np.minimum(link[a], link[b])
        link[a], link[:, a] = row, row
        link[a, a] = np.inf
        members[a] += members[b]
        active[b] = False
        link[b], link[:, b] = np.inf, np.inf
    labels = np.empty(n, dtype=int)
    for k, i in enumerate(np.flatnonzero(active)):
        labels[members[i]] = k
    order: dict[int, int] = {}
    return [order.setdefault(int(x), len(order)) for x in labels]
