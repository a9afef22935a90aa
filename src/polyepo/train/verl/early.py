"""Clustering each group of a verl step as soon as its rollouts are scored (``overlap_clustering``).

verl 0.9's sync trainer generates a step's rollouts and scores each one as soon as it is
generated (its reward loop runs inside sampling), then computes log-probs, then the
advantages. A group can be clustered once all N of its rollouts exist, which is when verl's
agent loop marks the group's prompt ``finished`` in TransferQueue (after every session's
reward). verl's replay buffer polls TransferQueue until enough groups are finished; after
each poll :meth:`EarlyClusters.notice` starts clustering the groups that finished since the
last one, on a background thread (:class:`polyepo.groups.PendingClusters`), while the other
groups are still generated and scored. The advantage step takes each group's result
(:meth:`EarlyClusters.take`, the ``ready`` of :func:`polyepo.train.verl.groups.cluster_results`),
waiting only for what is not done yet, and clusters a group it has no result for itself. The
groups, their responses and their context are exactly those the advantage step would build
(:func:`~polyepo.train.verl.groups.final_groups`, :func:`~polyepo.train.verl.groups.group_inputs`);
a result is handed over in the row order of the batch.

Pure Python + NumPy: TransferQueue is read through the ``read`` function the trainer gives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...clustering import ClusterResult
from ...groups import PendingClusters
from .groups import BatchRows, final_groups, group_inputs

log = logging.getLogger("polyepo.train.verl")


def uid_of(key: str) -> str:
    """The group (prompt uid) of a TransferQueue key ``{uid}_{session}_{index}``, as verl reads it."""
    return str(key).split("_")[0]


def in_order(result: ClusterResult, order: list[str], keys: list[str]) -> ClusterResult:
    """``result`` (ids for the rows ``order``) with its per-row values in the row order ``keys``."""
    if order == keys:
        return result
    where = {key: i for i, key in enumerate(order)}
    perm = [where[key] for key in keys]
    extra = {k: [v[i] for i in perm] if isinstance(v, list) and len(v) == len(order) else v
             for k, v in result.extra.items()}
    return ClusterResult(**{**vars(result), "ids": [result.ids[i] for i in perm], "extra": extra})


class EarlyClusters:
    """Groups clustered as they finish, handed to the advantage step by uid.

    Args:
        clusterer: the run's clusterer.
        workers: threads for a clusterer without ``cluster_many`` (``cluster_workers``).
        read: TransferQueue keys -> :class:`BatchRows` of those rows (with their keys).
    """

    def __init__(self, clusterer: Any, workers: int, read: Callable[[list[str]], BatchRows]) -> None:
        self.clusterer, self.workers, self.read = clusterer, workers, read
        self._jobs: dict[str, tuple[list[str], PendingClusters, int]] = {}
        self._lock = threading.Lock()
        self.started = 0
        """Groups whose clustering started early (a running count)."""
        self.spans: list[tuple[float, float]] = []
        """``(start, end)`` (``time.perf_counter()``) of the clustering behind each result taken;
        the trainer reads and clears it per step."""

    def notice(self, finished: Iterable[str], partition: Mapping[str, Any]) -> int:
        """Start clustering the groups of ``finished`` (prompt uids) not started yet, whose rows are
        the keys of ``partition`` with their uid; forget groups no longer in ``partition`` (cleared
        from TransferQueue: used, or evicted). Returns how many groups started."""
        present: dict[str, list[str]] = {}
        for key in partition:
            present.setdefault(uid_of(key), []).append(str(key))
        with self._lock:
            for uid in [u for u in self._jobs if u not in present]:
                del self._jobs[uid]
            new = [str(u) for u in finished if str(u) in present and str(u) not in self._jobs]
        if not new:
            return 0
        try:
            rows = self.read([key for uid in new for key in present[uid]])
            labels, groups = final_groups(rows)
            pending = PendingClusters(self.clusterer, group_inputs(rows, groups), labels=labels, workers=self.workers)
        except Exception as e:  # the advantage step clusters these groups itself (and fails there, if it must)
            log.warning("could not start clustering %d finished group(s) early (%s: %s); the advantage step "
                        "clusters them", len(new), type(e).__name__, e)
            return 0
        assert rows.keys is not None
        with self._lock:
            for k, (label, g) in enumerate(zip(labels, groups)):
                self._jobs[str(label)] = ([rows.keys[i] for i in g], pending, k)
            self.started += len(labels)
        return len(labels)

    def take(self, uid: Any, keys: list[str]) -> ClusterResult | None:
        """The result of group ``uid`` for its rows ``keys`` (waiting for it if need be), in that
        order; None when it was not clustered early, or on other rows. Raises what the
        clusterer raised (a judge that stayed down, ``on_failure=raise``)."""
        with self._lock:
            job = self._jobs.pop(str(uid), None)
        if job is None:
            return None
        order, pending, k = job
        if sorted(order) != sorted(keys):
            return None
        results, _ = pending.result()
        self.spans.append((float(pending.started or 0.0), float(pending.finished or 0.0)))
        return in_order(results[k], order, keys)
