"""Per-rollout cluster ids for a verl batch, computed once per group on whole groups.

verl 0.9 scores rollouts one at a time (its reward loop calls the reward function per
sample), so no reward function sees a whole group. Strategy clustering therefore runs here,
in the trainer's advantage step, where the whole batch is at hand: rows are grouped by
verl's ``uid`` (rows of one group need not be adjacent: verl balances the batch across
data-parallel ranks first), each group's N responses go to the clusterer together, and the
ids are scattered back to the rows. Pure Python + NumPy: no verl import, testable anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...clustering import DEGENERATE, Clusterer, ClusterResult
from ...metrics import distinct_clusters
from .settings import VerlSettings


@dataclass(frozen=True)
class BatchRows:
    """One verl batch, row-aligned (row i of every field is the same rollout).

    Attributes:
        uids: ``[B]`` group label of each row (verl's ``uid``).
        prompts: ``[B]`` prompt text of each row.
        responses: ``[B]`` decoded response text.
        rewards: ``float64[B]`` scalar reward of each row (sum of its token-level scores).
        extras: ``[B]`` the ``reward_extra_info`` dict the reward function returned for each row.
    """

    uids: Sequence[Any]
    prompts: Sequence[str]
    responses: Sequence[str]
    rewards: np.ndarray
    extras: Sequence[Mapping[str, Any]]

    def __post_init__(self) -> None:
        B = len(self.uids)
        for name in ("prompts", "responses", "rewards", "extras"):
            if len(getattr(self, name)) != B:
                raise ValueError(f"BatchRows.{name} has {len(getattr(self, name))} rows but uids has {B}")


def group_indices(uids: Sequence[Any]) -> list[np.ndarray]:
    """Row indices of each group, groups in order of first appearance, rows in batch order."""
    order: dict[Any, list[int]] = {}
    for i, uid in enumerate(uids):
        order.setdefault(uid, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in order.values()]


def _group_context(rows: BatchRows, idx: np.ndarray) -> dict[str, Any]:
    context: dict[str, Any] = {"rewards": [float(rows.rewards[i]) for i in idx]}
    keys = sorted({k for i in idx for k in rows.extras[i]})
    for key in keys:
        context.setdefault(key, [rows.extras[i].get(key) for i in idx])
    return context


def _cluster_one(clusterer: Clusterer, rows: BatchRows, idx: np.ndarray) -> ClusterResult:
    prompt = rows.prompts[int(idx[0])]
    result = clusterer.cluster(prompt, [rows.responses[i] for i in idx], **_group_context(rows, idx))
    if not isinstance(result, ClusterResult):
        raise TypeError(f"clusterer {clusterer.name!r} returned {type(result).__name__}, not ClusterResult")
    if len(result.ids) != idx.size:
        raise ValueError(
            f"clusterer {clusterer.name!r} returned {len(result.ids)} ids for a group of {idx.size} responses"
        )
    return result


def cluster_with_clusterer(
    rows: BatchRows, clusterer: Clusterer, settings: VerlSettings
) -> tuple[np.ndarray, dict[str, float]]:
    """Cluster every group of ``rows`` with ``clusterer`` (concurrently); ``int64[B]`` ids + stats.

    A group the clusterer marks ``failed`` keeps the ids its failure policy chose and is
    counted; more than ``settings.max_failed_group_fraction`` failed groups raise
    ``RuntimeError``. An exception from the clusterer propagates, naming the group's uid.
    """
    groups = group_indices(rows.uids)
    ids = np.full(len(rows.uids), -1, dtype=np.int64)

    def run(idx: np.ndarray) -> ClusterResult:
        try:
            return _cluster_one(clusterer, rows, idx)
        except Exception as e:
            raise RuntimeError(f"clustering group uid={rows.uids[int(idx[0])]!r} failed: {e}") from e

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(settings.cluster_workers, max(len(groups), 1))) as pool:
        results = list(pool.map(run, groups))
    failed = [r for r in results if r.failed]
    for idx, result in zip(groups, results):
        ids[idx] = np.asarray(result.ids, dtype=np.int64)
    fraction = len(failed) / max(len(groups), 1)
    if fraction > settings.max_failed_group_fraction:
        first = failed[0]
        raise RuntimeError(
            f"clusterer {clusterer.name!r} failed on {len(failed)} of {len(groups)} groups "
            f"({fraction:.0%} > max_failed_group_fraction={settings.max_failed_group_fraction}); "
            f"first error: {first.error!r}, policy applied: {first.policy!r}"
        )
    stats = {
        "polyepo/cluster/groups": float(len(groups)),
        "polyepo/cluster/failed_groups": float(len(failed)),
        "polyepo/cluster/failed_group_fraction": fraction,
        "polyepo/cluster/cache_hits": float(sum(r.cache_hit for r in results)),
        "polyepo/cluster/retries": float(sum(r.retries for r in results)),
        "polyepo/cluster/seconds": time.perf_counter() - start,
    }
    return ids, stats


def ids_from_extras(rows: BatchRows, key: str) -> np.ndarray:
    """``int64[B]`` cluster ids that the reward function returned under extra ``key``."""
    out = np.empty(len(rows.uids), dtype=np.int64)
    for i, extra in enumerate(rows.extras):
        if key not in extra:
            have = ", ".join(sorted(extra)) or "(none)"
            raise ValueError(
                f"row {i} (uid={rows.uids[i]!r}): the reward function returned no extra {key!r} "
                f"(algorithm.polyepo.cluster_extra_key); its extras: {have}"
            )
        value = extra[key]
        try:
            ok = not isinstance(value, (bool, np.bool_)) and float(value).is_integer()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"row {i} (uid={rows.uids[i]!r}): extra {key!r} = {value!r} is not an integer id")
        out[i] = int(value)
    return out


def diversity_stats(rows: BatchRows, ids: np.ndarray, threshold: float) -> dict[str, float]:
    """Mean distinct non-degenerate strategies per group: among all and among correct rollouts."""
    groups = group_indices(rows.uids)
    correct = rows.rewards >= threshold
    distinct = [distinct_clusters(ids[g].tolist(), degenerate=(0, DEGENERATE)) for g in groups]
    distinct_ok = [distinct_clusters(ids[g].tolist(), correct[g].tolist(), degenerate=(0, DEGENERATE)) for g in groups]
    return {
        "polyepo/diversity/distinct_mean": float(np.mean(distinct)) if groups else 0.0,
        "polyepo/diversity/distinct_correct_mean": float(np.mean(distinct_ok)) if groups else 0.0,
    }


def batch_columns(
    rows: BatchRows, settings: VerlSettings, clusterer: Clusterer | None = None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The per-row columns handed to the estimator, and the step's metrics.

    Columns: every reward extra (object arrays, ``None`` where a row lacks the key) plus
    ``cluster_id`` (``int64[B]``) unless ``settings.cluster_source == "none"``.
    """
    keys = sorted({k for extra in rows.extras for k in extra})
    columns: dict[str, np.ndarray] = {}
    for key in keys:
        col = np.empty(len(rows.uids), dtype=object)
        for i, extra in enumerate(rows.extras):  # one by one: list-valued extras stay whole
            col[i] = extra.get(key)
        columns[key] = col
    stats: dict[str, float] = {}
    if "reward_none" in columns:
        stats["polyepo/reward/none_rows"] = float(sum(bool(v) for v in columns["reward_none"]))
    source = settings.cluster_source
    if source == "clusterer":
        if clusterer is None:
            raise ValueError(f"algorithm.polyepo.clusterer={settings.clusterer!r} but no clusterer was built")
        ids, cluster_stats = cluster_with_clusterer(rows, clusterer, settings)
        stats.update(cluster_stats)
    elif source == "reward_extra":
        ids = ids_from_extras(rows, str(settings.cluster_extra_key))
    else:
        return columns, stats
    columns["cluster_id"] = ids
    stats.update(diversity_stats(rows, ids, settings.correct_threshold))
    return columns, stats


def scatter_columns(columns: Mapping[str, np.ndarray], rows: np.ndarray, total: int) -> dict[str, np.ndarray]:
    """Columns computed for the ``rows`` subset of a batch, placed in a batch of ``total`` rows.

    The other rows (verl's synthetic padding rows) get ``cluster_id`` = DEGENERATE and None
    elsewhere.
    """
    out: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        if name == "cluster_id":
            full = np.full(total, DEGENERATE, dtype=np.int64)
        else:
            full = np.empty(total, dtype=object)
        full[rows] = col
        out[name] = full
    return out
