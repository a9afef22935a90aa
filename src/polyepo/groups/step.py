"""The group step: rows in groups (rewards, cluster results) -> advantages + one dict of step metrics.

Every engine calls :func:`group_step` once per step on the whole (global) batch: TRL's
trainer on the gathered generation batch, verl's estimator adapter on verl's batch, the dry
run on one group. The engines only translate their tensors (or TransferQueue fields) to and
from its inputs and outputs, so a GRPO-vs-Poly-EPO or a TRL-vs-verl comparison changes one
thing only.

What it does, in order:

1. **Unscorable rollouts** (reward None/NaN: every reward function declined) follow
   ``options.unscorable``: ``drop`` leaves them out of their group (advantage 0; a set
   estimator's ``set_size`` shrinks to the rows left), ``zero`` scores them 0.0 and keeps them,
   ``raise`` stops the step.
2. **Failed clustering**: more than ``options.max_failed_group_fraction`` of the clustered
   groups failed -> ``RuntimeError``. A failed group keeps the ids its clusterer's
   ``on_failure`` policy chose (``fallback:NAME``: the fallback's clusters; ``zero_diversity``:
   every response degenerate), except ``reward_only``: that group gets exactly ``dr_grpo``'s
   advantage (rewards centred, no diversity term).
3. **Advantages**: ONE :func:`polyepo.advantages.compute_advantages` call over every row that
   enters the chosen estimator (groups by id, ``short_groups="shrink"``, the ``singletons``
   rule), and one ``dr_grpo`` call over the ``reward_only`` groups' rows.
4. **Metrics**: :func:`polyepo.groups.metrics.step_metrics` (names in ``STEP_METRICS``).

Clusters may be computed after (or while) the rewards are: the step needs both only here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..advantages import NEEDS_CLUSTERS, compute_advantages, estimator_options
from ..clustering.base import DEGENERATE, ClusterResult
from .clusters import results_from_ids
from .metrics import P, step_metrics
from .options import GroupOptions


class UnscorableRowsError(ValueError):
    """Rollouts without a reward, under ``unscorable="raise"``."""


@dataclass
class StepResult:
    """What one group step gives back.

    Attributes:
        advantages: ``float64[B]``, aligned with the input rows.
        metrics: step metrics (``polyepo/...``, see :data:`polyepo.groups.STEP_METRICS`).
        groups: row indices of each group, in order of first appearance.
        entered: ``bool[B]``, the rows that entered an estimator.
    """

    advantages: np.ndarray
    metrics: dict[str, float]
    groups: list[np.ndarray]
    entered: np.ndarray


def group_rows(group_ids: Sequence[Any] | np.ndarray) -> list[np.ndarray]:
    """Row indices of each group: groups in order of first appearance, rows in batch order."""
    order: dict[Any, list[int]] = {}
    for i, gid in enumerate(group_ids):
        order.setdefault(gid, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in order.values()]


def as_rewards(rewards: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """``float64[B]`` with NaN where a reward is None (unscorable); inf and non-numbers raise."""
    out = np.empty(len(rewards), dtype=np.float64)
    for i, r in enumerate(rewards):
        if r is None:
            out[i] = math.nan
            continue
        try:
            v = float(r)
        except (TypeError, ValueError):
            raise ValueError(f"reward of row {i} is {r!r}, not a number or None") from None
        if math.isinf(v):
            raise ValueError(f"reward of row {i} is {v}: rewards must be finite (None = unscorable)")
        out[i] = v
    return out


def _as_results(clusters: Any, groups: list[np.ndarray], size: int) -> list[ClusterResult] | None:
    if clusters is None:
        return None
    if len(clusters) and isinstance(clusters[0], ClusterResult):
        results = list(clusters)
        if len(results) != len(groups):
            raise ValueError(f"{len(results)} cluster results for {len(groups)} groups (one per group, "
                             "in order of first appearance)")
        for k, (res, g) in enumerate(zip(results, groups)):
            if len(res.ids) != g.size:
                raise ValueError(f"cluster result {k} has {len(res.ids)} ids for a group of {g.size} rows")
        return results
    if len(clusters) != size:
        raise ValueError(f"{len(clusters)} cluster ids for {size} rows (give one id per row, or one "
                         "ClusterResult per group)")
    return results_from_ids(clusters, groups)


def _check_failures(results: list[ClusterResult] | None, limit: float) -> None:
    if not results:
        return
    failed = [r for r in results if r.failed]
    fraction = len(failed) / len(results)
    if fraction > limit:
        first = failed[0]
        raise RuntimeError(
            f"clusterer {first.backend!r} failed on {len(failed)} of {len(results)} groups "
            f"({fraction:.0%} > max_failed_group_fraction={limit}); first error: {first.error!r}, "
            f"policy applied: {first.policy!r}"
        )


def _per_row(groups: list[np.ndarray], results: list[ClusterResult] | None, size: int,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(group index, cluster id, in a reward_only group)`` of every row."""
    gid = np.empty(size, dtype=np.int64)
    cluster_ids = np.zeros(size, dtype=np.int64)
    reward_only = np.zeros(size, dtype=bool)
    for k, g in enumerate(groups):
        gid[g] = k
        if results is not None:
            cluster_ids[g] = results[k].ids
            reward_only[g] = results[k].failed and results[k].policy == "reward_only"
    return gid, cluster_ids, reward_only


def _metric_degenerate(estimator: str, options: Mapping[str, Any]) -> tuple[int, ...]:
    value = options.get("degenerate", estimator_options(estimator).get("degenerate", (0, DEGENERATE)))
    if value is None:
        return ()
    return (int(value),) if isinstance(value, (int, np.integer)) else tuple(int(d) for d in value)


def group_step(
    rewards: Sequence[float | None] | np.ndarray,
    group_ids: Sequence[Any] | np.ndarray,
    clusters: Sequence[ClusterResult] | Sequence[int] | np.ndarray | None = None,
    *,
    estimator: str,
    estimator_options: Mapping[str, Any] | None = None,
    options: GroupOptions | None = None,
    prompt_keys: Sequence[Any] | None = None,
) -> StepResult:
    """Advantages and step metrics of a batch of rows in groups (see the module docstring).

    Args:
        rewards: ``[B]`` rewards; None (or NaN) = unscorable.
        group_ids: ``[B]`` group label of each row (rows of a group need not be adjacent).
        clusters: one :class:`ClusterResult` per group (order of first appearance, ids over all
            of the group's rows), or ``[B]`` integer ids, or None (no clustering).
        estimator: a name in ``polyepo.advantages.ESTIMATORS``.
        estimator_options: its options (``set_size``, ``reduction`` ...).
        options: the step's policies (:class:`GroupOptions`; default: its defaults).
        prompt_keys: ``[B]`` stable key of each row's prompt (problem id, else the prompt text),
            for an estimator that keeps per-prompt state across steps (the historical
            ``outcome_explore``, whose ``history`` comes in ``estimator_options``).
    """
    start = time.perf_counter()
    opts = options if options is not None else GroupOptions()
    opts.check_group_options()
    est_opts = dict(estimator_options or {})
    r = as_rewards(rewards)
    ids_in = np.asarray(group_ids, dtype=object) if not isinstance(group_ids, np.ndarray) else group_ids
    if len(ids_in) != r.size:
        raise ValueError(f"{len(ids_in)} group ids for {r.size} rewards")
    keys = None if prompt_keys is None else np.asarray(list(prompt_keys), dtype=object)
    if keys is not None and keys.shape != (r.size,):
        raise ValueError(f"{keys.size} prompt keys for {r.size} rewards")
    groups = group_rows(ids_in)
    results = _as_results(clusters, groups, r.size)
    if results is None and estimator in NEEDS_CLUSTERS:
        raise ValueError(f"estimator {estimator!r} needs cluster ids: set a clusterer")
    unscorable = np.isnan(r)
    if unscorable.any() and opts.unscorable == "raise":
        rows = np.flatnonzero(unscorable)
        raise UnscorableRowsError(
            f"{rows.size} of {r.size} rollouts have no reward (every reward function returned None), "
            f"e.g. rows {rows[:5].tolist()}; unscorable='raise' stops here (drop or zero continue)")
    _check_failures(results, float(opts.max_failed_group_fraction))
    scored = np.where(unscorable, 0.0, r)
    entered = np.ones(r.size, bool) if opts.unscorable == "zero" else ~unscorable
    gid, cluster_ids, reward_only = _per_row(groups, results, r.size)
    adv = np.zeros(r.size)
    common = {"short_groups": "shrink", "singletons": opts.singletons}
    main = entered & ~reward_only
    if main.any():
        adv[main] = compute_advantages(scored[main], None if results is None else cluster_ids[main],
                                       group_ids=gid[main], estimator=estimator, **common, **est_opts,
                                       prompt_keys=None if keys is None else keys[main])
    rest = entered & reward_only
    if rest.any():
        adv[rest] = compute_advantages(scored[rest], group_ids=gid[rest], estimator="dr_grpo", **common)
    metrics = step_metrics(r, adv, groups, results, entered, correct_threshold=float(opts.correct_threshold),
                           degenerate=_metric_degenerate(estimator, est_opts))
    metrics[P + "time_advantage_s"] = time.perf_counter() - start
    return StepResult(adv, metrics, groups, entered)
