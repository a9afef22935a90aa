"""The step metrics: one vocabulary for every engine (TRL and verl log exactly these names).

:data:`STEP_METRICS` names every metric and says what it means; docs/training.md lists each
once (a test keeps the two equal). :func:`step_metrics` computes them from one step's rows,
groups, cluster results and advantages. Diversity figures are means over the groups whose
ids are real clusters: a group that got a stand-in after a clustering failure
(``zero_diversity``, ``reward_only``) is counted under the failure keys and left out of the
means, so an outage never looks like a diversity collapse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..clustering.base import ClusterResult
from ..clustering.metrics import aggregate_metrics, group_metrics

P = "polyepo/"

#: metric name -> meaning. ``time_*`` keys are added by the engines around the step.
STEP_METRICS: dict[str, str] = {
    P + "rows": "rollouts in the step (the global batch)",
    P + "groups": "groups (prompts) in the step",
    P + "unscorable": "rollouts every reward function declined (None); the `unscorable` policy applies to them",
    P + "groups_with_unscorable": "groups holding at least one unscorable rollout",
    P + "groups_unscorable": "groups with no scorable rollout (advantage 0)",
    P + "groups_singleton": "groups that entered the estimator with a single rollout (the `singletons` rule)",
    P + "advantage_mean": "mean advantage over the step's rollouts (0 by construction for centred estimators)",
    P + "advantage_std": "standard deviation of the advantages",
    P + "advantage_abs_max": "largest absolute advantage",
    P + "frac_groups_zero_advantage": "share of groups whose advantages are all 0 (no learning signal)",
    P + "groups_clustered": "groups given to the clusterer (0 when there is none)",
    P + "cluster_failures": "groups whose clusterer failed (its on_failure policy was applied)",
    P + "cluster_failure_fraction": "cluster_failures / groups_clustered; above max_failed_group_fraction the step stops",
    P + "cluster_fallbacks": "failed groups clustered by an offline fallback backend",
    P + "cluster_zero_diversity": "failed groups given zero diversity (every response degenerate)",
    P + "cluster_reward_only": "failed groups given the reward-only advantage (dr_grpo's: rewards centred)",
    P + "cluster_cache_hits": "groups whose clusters came from the judge cache",
    P + "judge_requests": "HTTP requests the clusterer sent",
    P + "judge_retries": "transport retries among them (429, 5xx, timeouts)",
    P + "judge_reasks": "invalid judge replies sent back to the judge",
    P + "groups_with_clusters": "groups whose ids are real clusters (the diversity means below are over these)",
    P + "clusters_distinct": "distinct non-degenerate strategies per group",
    P + "clusters_distinct_correct": "the same among correct rollouts (reward >= correct_threshold)",
    P + "clusters_distinct_incorrect": "the same among incorrect rollouts",
    P + "degenerate_per_group": "degenerate rollouts per group",
    P + "correct_per_group": "correct rollouts per group",
    P + "frac_groups_all_distinct": "share of groups in which every rollout has its own strategy",
    P + "frac_groups_one_cluster": "share of groups with at most one strategy (no diversity signal)",
    P + "time_reward_s": "seconds in the reward functions this step (TRL; on verl they run in its reward loop)",
    P + "time_cluster_s": "seconds clustering this step's groups (beside the rewards unless overlap_clustering is off)",
    P + "time_cluster_wait_s": "seconds the step waited for its clustering once the rewards were in: the part of it the rewards did not hide",
    P + "time_advantage_s": "seconds in the group step (advantages and these metrics)",
}

#: clustering.metrics key -> step metric (diversity means and clustering counters).
_FROM_CLUSTERING = {
    "distinct": "clusters_distinct", "distinct_correct": "clusters_distinct_correct",
    "distinct_incorrect": "clusters_distinct_incorrect", "degenerate": "degenerate_per_group",
    "all_distinct": "frac_groups_all_distinct", "one_cluster": "frac_groups_one_cluster",
    "judge_failed": "cluster_failures", "fallback": "cluster_fallbacks", "zero_diversity": "cluster_zero_diversity",
    "reward_only": "cluster_reward_only", "cache_hit": "cluster_cache_hits", "requests": "judge_requests",
    "retries": "judge_retries", "reasks": "judge_reasks", "clustered": "groups_with_clusters",
}


def step_metrics(
    rewards: np.ndarray,
    advantages: np.ndarray,
    groups: Sequence[np.ndarray],
    results: Sequence[ClusterResult] | None,
    entered: np.ndarray,
    *,
    correct_threshold: float,
    degenerate: Iterable[int],
) -> dict[str, float]:
    """The step's metrics (keys of :data:`STEP_METRICS` except ``time_*``).

    Args:
        rewards: ``float64[B]``, NaN for unscorable rollouts.
        advantages: ``float64[B]``.
        groups: row indices of each group.
        results: one ClusterResult per group, or None (no clustering).
        entered: ``bool[B]``, the rollouts that entered an estimator.
        correct_threshold: correct when reward >= this (an unscorable rollout is not correct).
        degenerate: ids that are no strategy (the clusterer's own id is added per group).
    """
    nan = np.isnan(rewards)
    ok = np.nan_to_num(rewards, nan=-np.inf) >= correct_threshold
    per_group_adv = [advantages[g] for g in groups]
    m: dict[str, float] = {
        "rows": float(rewards.size),
        "groups": float(len(groups)),
        "unscorable": float(nan.sum()),
        "groups_with_unscorable": float(sum(bool(nan[g].any()) for g in groups)),
        "groups_unscorable": float(sum(bool(nan[g].all()) for g in groups)),
        "groups_singleton": float(sum(int(entered[g].sum()) == 1 for g in groups)),
        "advantage_mean": float(advantages.mean()) if advantages.size else 0.0,
        "advantage_std": float(advantages.std()) if advantages.size else 0.0,
        "advantage_abs_max": float(np.abs(advantages).max()) if advantages.size else 0.0,
        "frac_groups_zero_advantage": float(np.mean([not np.any(a) for a in per_group_adv])) if groups else 0.0,
        "correct_per_group": float(np.mean([ok[g].sum() for g in groups])) if groups else 0.0,
        "groups_clustered": 0.0,
    }
    if results is not None:
        deg = {int(d) for d in degenerate}
        per_group = [group_metrics(res, correct=ok[g].tolist(), degenerate=deg | {int(res.degenerate)})
                     for res, g in zip(results, groups, strict=True)]
        agg = aggregate_metrics(per_group)
        m["groups_clustered"] = float(len(per_group))
        m.update({new: float(agg[old]) for old, new in _FROM_CLUSTERING.items() if old in agg})
        m["cluster_failure_fraction"] = m.get("cluster_failures", 0.0) / max(len(per_group), 1)
    return {P + k: v for k, v in m.items()}
