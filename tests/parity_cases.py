"""One batch for every engine: the group step, the TRL trainer's path and the verl adapter must
give it the same advantages and the same metrics (tests/test_groups.py, test_train.py, test_verl.py).

Six groups of G = 4 adjacent rows (TRL's layout; the verl tests shuffle them):

====  ==========================  ====================  ===========================================
g     rewards (None = unscorable)  cluster result         what it exercises
====  ==========================  ====================  ===========================================
g0    1, 0, 1, 1                   1, 2, 1, 3            an ordinary group
g1    1, None, 0, None             1, 1, 2, 100          a short group (2 scorable rows)
g2    None, None, 1, None          4, 4, 4, 4            a singleton (1 scorable row)
g3    1, 0, 0, 1                   failed, reward_only   dr_grpo's advantage whatever the estimator
g4    None x 4                     1, 2, 3, 4            no scorable row
g5    0, 1, 1, 0                   failed, zero_diversity  every response degenerate
====  ==========================  ====================  ===========================================

``DR_GRPO_ADVANTAGES`` and ``DR_GRPO_METRICS`` are worked out by hand (module docstring of
each), with the defaults: unscorable rows dropped, singletons 0, correct when reward >= 1.
"""

from __future__ import annotations

import math

from polyepo.clustering import ClusterResult

G = 4
REWARDS = [1, 0, 1, 1,  1, None, 0, None,  None, None, 1, None,  1, 0, 0, 1,  None, None, None, None,  0, 1, 1, 0]


def results() -> list[ClusterResult]:
    """Fresh cluster results of the six groups (a ClusterResult is mutable)."""
    return [
        ClusterResult([1, 2, 1, 3], "toy"),
        ClusterResult([1, 1, 2, 100], "toy"),
        ClusterResult([4, 4, 4, 4], "toy"),
        ClusterResult([100] * 4, "judge", failed=True, policy="reward_only", error="judge down", requests=2, retries=1),
        ClusterResult([1, 2, 3, 4], "toy", cache_hit=True),
        ClusterResult([100] * 4, "judge", failed=True, policy="zero_diversity", error="judge down", requests=3),
    ]


# g0: r - 0.75; g1: rows 0, 2 -> [1, 0] - 0.5; g2: singleton -> 0; g3: reward_only -> r - 0.5;
# g4: nothing scorable -> 0; g5: zero_diversity does not touch dr_grpo (it ignores clusters) -> r - 0.5
DR_GRPO_ADVANTAGES = [0.25, -0.75, 0.25, 0.25,  0.5, 0.0, -0.5, 0.0,  0.0, 0.0, 0.0, 0.0,
                      0.5, -0.5, -0.5, 0.5,  0.0, 0.0, 0.0, 0.0,  -0.5, 0.5, 0.5, -0.5]

# diversity means over the 4 groups with real clusters (g0, g1, g2, g4):
#   distinct 3, 2, 1, 4; among correct {1,3}, {1}, {4}, {} -> 2, 1, 1, 0; among incorrect
#   {2}, {1,2}, {4}, {1,2,3,4} -> 1, 2, 1, 4; degenerate 0, 1, 0, 0; all distinct only g4;
#   one cluster only g2. correct per group over all six: 3, 1, 1, 2, 0, 2.
DR_GRPO_METRICS = {
    "polyepo/rows": 24, "polyepo/groups": 6, "polyepo/unscorable": 9, "polyepo/groups_with_unscorable": 3,
    "polyepo/groups_unscorable": 1, "polyepo/groups_singleton": 1,
    "polyepo/advantage_mean": 0.0, "polyepo/advantage_std": math.sqrt(3.25 / 24), "polyepo/advantage_abs_max": 0.75,
    "polyepo/frac_groups_zero_advantage": 2 / 6, "polyepo/correct_per_group": 9 / 6,
    "polyepo/groups_clustered": 6, "polyepo/cluster_failures": 2, "polyepo/cluster_failure_fraction": 2 / 6,
    "polyepo/cluster_fallbacks": 0, "polyepo/cluster_zero_diversity": 1, "polyepo/cluster_reward_only": 1,
    "polyepo/cluster_cache_hits": 1, "polyepo/judge_requests": 5, "polyepo/judge_retries": 1,
    "polyepo/judge_reasks": 0, "polyepo/groups_with_clusters": 4,
    "polyepo/clusters_distinct": 2.5, "polyepo/clusters_distinct_correct": 1.0,
    "polyepo/clusters_distinct_incorrect": 2.0, "polyepo/degenerate_per_group": 0.25,
    "polyepo/frac_groups_all_distinct": 0.25, "polyepo/frac_groups_one_cluster": 0.25,
}

#: (estimator, its options) run through every engine
ESTIMATORS = [
    ("dr_grpo", {}),
    ("poly_epo", {"set_size": 4}),
    ("poly_epo", {"set_size": 3, "reduction": "mean", "min_distinct": 1, "degenerate": [100]}),
    ("grpo_div", {}),
    ("rloo", {}),
    ("grpo", {}),
    ("pass_at_k", {"set_size": 2}),
    ("pass_at_k", {"set_size": 2, "scale": "std", "reduction": "mean"}),
    ("set_rl", {"set_size": 2}),
    ("pkpo", {"set_size": 2}),
    ("darling", {}),
    ("darling", {"correct_only": True}),
    ("uniqueness", {}),
    ("outcome_explore", {}),
    ("reinforce_pp_baseline", {}),
]


def without_timing(metrics: dict) -> dict:
    """The metrics an engine must reproduce exactly (timings differ from run to run)."""
    return {k: v for k, v in metrics.items() if not k.startswith("polyepo/time_")}
