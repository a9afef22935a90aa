"""Strategy clustering: N responses of one prompt in, N integer strategy ids out.

Every backend follows :class:`Clusterer` and is registered by name in :data:`CLUSTERERS`
(``make_clusterer("python_ast")``). Degenerate responses (empty, gibberish, off-task) get
the reserved id :data:`DEGENERATE` (100 unless configured).
"""

from __future__ import annotations

from .base import CLUSTERERS, DEGENERATE, Clusterer, ClusterResult, make_clusterer

__all__ = ["CLUSTERERS", "DEGENERATE", "ClusterResult", "Clusterer", "make_clusterer"]
