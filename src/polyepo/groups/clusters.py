"""Cluster ids for the groups of a step: one clustering call path for every caller.

:func:`cluster_groups` sends every group's N responses to the clusterer together (a judge
sees the whole group) and checks what comes back; :func:`results_from_ids` wraps ready-made
per-row ids (a reward function's, or a test's) in the same :class:`ClusterResult` form, so the
group step sees one input type whichever way the ids were made. :class:`PendingClusters` runs
:func:`cluster_groups` on a background thread, so that a trainer clusters a step's groups while
it computes their rewards (both mostly wait on other machines: the judge, the sandbox).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..clustering.base import ClusterResult, Group, as_group


def _checked(result: Any, clusterer: Any, size: int, label: Any) -> ClusterResult:
    name = getattr(clusterer, "name", type(clusterer).__name__)
    if not isinstance(result, ClusterResult):
        raise TypeError(f"clusterer {name!r} returned {type(result).__name__}, not ClusterResult (group {label!r})")
    if len(result.ids) != size:
        raise ValueError(f"clusterer {name!r} returned {len(result.ids)} ids for a group of {size} responses "
                         f"(group {label!r})")
    return result


def cluster_groups(
    clusterer: Any,
    groups: Sequence[Group | tuple],
    *,
    labels: Sequence[Any] | None = None,
    workers: int = 1,
) -> tuple[list[ClusterResult], float]:
    """One :class:`ClusterResult` per group, in order, and the seconds it took.

    A clusterer with ``cluster_many`` gets all groups in one call (a judge backend sends them
    concurrently); otherwise ``cluster`` runs per group, on ``workers`` threads. Each result is
    checked (type, one id per response); an error names the group by its ``labels`` entry
    (default: its position).
    """
    gs = [as_group(g) for g in groups]
    names = list(labels) if labels is not None else list(range(len(gs)))
    if len(names) != len(gs):
        raise ValueError(f"{len(names)} labels for {len(gs)} groups")
    start = time.perf_counter()
    if not gs:
        return [], 0.0
    if hasattr(clusterer, "cluster_many"):  # as (prompt, responses, context) tuples, the plainest GroupLike
        results = list(clusterer.cluster_many([(g.prompt, g.responses, g.context) for g in gs]))
        if len(results) != len(gs):
            raise ValueError(f"clusterer {getattr(clusterer, 'name', '?')!r} returned {len(results)} results "
                             f"for {len(gs)} groups")
    else:
        def run(k: int) -> ClusterResult:
            g = gs[k]
            try:
                return clusterer.cluster(g.prompt, g.responses, **g.context)
            except Exception as e:
                raise RuntimeError(f"clustering group {names[k]!r} failed: {e}") from e

        with ThreadPoolExecutor(max_workers=max(1, min(int(workers), len(gs)))) as pool:
            results = list(pool.map(run, range(len(gs))))
    checked = [_checked(res, clusterer, len(g.responses), label) for res, g, label in zip(results, gs, names)]
    return checked, time.perf_counter() - start


def results_from_ids(ids: Sequence[int] | np.ndarray, groups: Sequence[np.ndarray], backend: str = "given",
                     ) -> list[ClusterResult]:
    """Per-row integer ids (``[B]``) as one :class:`ClusterResult` per group (rows ``groups[g]``)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"cluster ids must be 1-D, one per rollout; got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError(f"cluster ids must be integers, got {arr.tolist()[:8]}")
    return [ClusterResult(ids=[int(i) for i in arr[g]], backend=backend) for g in groups]


class PendingClusters:
    """:func:`cluster_groups` of one step, started now and collected with :meth:`result`.

    ``background=True`` runs it on a daemon thread from construction on (a daemon, so a run
    that stops on another error does not wait at exit for a judge outage); ``False`` runs it
    inside :meth:`result`, i.e. after whatever the caller does in between (the sequential
    order). Either way :meth:`result` returns ``(results, seconds clustering)`` or raises what
    the clusterer raised, in the calling thread.
    """

    def __init__(self, clusterer: Any, groups: Sequence[Group | tuple], *, labels: Sequence[Any] | None = None,
                 workers: int = 1, background: bool = True) -> None:
        self._call = (clusterer, list(groups), labels, workers)
        self.started: float | None = None
        """``time.perf_counter()`` when the clustering began (None before)."""
        self.finished: float | None = None
        """... and when it ended (None before)."""
        self._outcome: tuple[list[ClusterResult], float] | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="polyepo-clustering", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        clusterer, groups, labels, workers = self._call
        self.started = time.perf_counter()
        try:
            self._outcome = cluster_groups(clusterer, groups, labels=labels, workers=workers)
        except BaseException as e:  # handed to the caller by result()
            self._error = e
        finally:
            self.finished = time.perf_counter()

    def done(self) -> bool:
        """True once the clustering has finished (or failed); False while it runs or before it starts."""
        return self._outcome is not None or self._error is not None

    def result(self) -> tuple[list[ClusterResult], float]:
        """Wait for the clustering (run it now if it was not started) and return its results."""
        if self._thread is None:
            if not self.done():
                self._run()
        else:
            self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._outcome is not None
        return self._outcome
