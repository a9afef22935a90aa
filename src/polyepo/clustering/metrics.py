"""The clustering figures a trainer logs each step, from cluster ids and correctness.

:func:`group_metrics` describes one group; :func:`aggregate_metrics` turns the groups of a
step into one dict: the diversity figures are means over groups, the event counters sums.
Every key and its meaning is in :data:`METRIC_KEYS` (and in docs/clustering.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .base import DEGENERATE, ClusterResult

#: key -> (how a step aggregates it, meaning)
METRIC_KEYS: dict[str, tuple[str, str]] = {
    "distinct": ("mean", "distinct non-degenerate strategies among the group's responses"),
    "distinct_correct": ("mean", "distinct non-degenerate strategies among its correct responses"),
    "distinct_incorrect": ("mean", "distinct non-degenerate strategies among its incorrect responses"),
    "degenerate": ("mean", "responses in the degenerate cluster"),
    "correct": ("mean", "correct responses (reward >= correct_threshold)"),
    "all_distinct": ("mean", "1 if every response has its own non-degenerate strategy (N >= 2)"),
    "one_cluster": ("mean", "1 if the responses hold at most one non-degenerate strategy"),
    "clustered": ("sum", "1 if the ids are real clusters (not a zero_diversity or reward_only stand-in)"),
    "judge_failed": ("sum", "1 if the backend failed on the group and the failure policy was applied"),
    "fallback": ("sum", "1 if an offline fallback backend clustered the group"),
    "zero_diversity": ("sum", "1 if the group got zero diversity after a failure"),
    "reward_only": ("sum", "1 if the group got a reward-only (dr_grpo) advantage after a failure"),
    "cache_hit": ("sum", "1 if the clusters came from the cache (no request)"),
    "requests": ("sum", "HTTP requests sent for the group"),
    "retries": ("sum", "transport retries (429, 5xx, timeouts) among them"),
    "reasks": ("sum", "invalid replies sent back to the judge"),
}
_DIVERSITY = ("distinct", "distinct_correct", "distinct_incorrect", "degenerate", "correct", "all_distinct",
              "one_cluster")
#: ``ClusterResult.policy`` values whose ids are stand-ins, not clusters (left out of diversity means).
STAND_IN_POLICIES = ("zero_diversity", "reward_only")


def group_metrics(
    ids: Sequence[int] | ClusterResult,
    correct: Sequence[bool] | None = None,
    *,
    rewards: Sequence[float] | None = None,
    correct_threshold: float = 1.0,
    degenerate: int | Iterable[int] | None = None,
) -> dict[str, float]:
    """Figures of one group (keys in :data:`METRIC_KEYS`).

    Args:
        ids: the N cluster ids, or the :class:`ClusterResult` (which adds the judge counters).
        correct: N flags; or give ``rewards`` and a response counts as correct when its
            reward is >= ``correct_threshold``. Without either, the ``*_correct``,
            ``*_incorrect`` and ``correct`` keys are left out.
        degenerate: the degenerate id(s); default the result's own, else 100.
    """
    result = ids if isinstance(ids, ClusterResult) else None
    id_list = [int(i) for i in (result.ids if result is not None else ids)]
    if degenerate is None:
        degenerate = result.degenerate if result is not None else DEGENERATE
    deg = {int(degenerate)} if isinstance(degenerate, int) else {int(d) for d in degenerate}
    if correct is None and rewards is not None:
        correct = [float(r) >= correct_threshold for r in rewards]
    distinct = len(set(id_list) - deg)
    out: dict[str, float] = {
        "distinct": float(distinct),
        "degenerate": float(sum(i in deg for i in id_list)),
        "all_distinct": float(len(id_list) >= 2 and distinct == len(id_list)),
        "one_cluster": float(distinct <= 1),
    }
    if correct is not None:
        if len(correct) != len(id_list):
            raise ValueError(f"correct/rewards has length {len(correct)} but the group has {len(id_list)} ids")
        flags = [bool(c) for c in correct]
        out["correct"] = float(sum(flags))
        out["distinct_correct"] = float(len({i for i, c in zip(id_list, flags) if c} - deg))
        out["distinct_incorrect"] = float(len({i for i, c in zip(id_list, flags) if not c} - deg))
    failed = bool(result is not None and result.failed)
    zero = failed and result.policy == "zero_diversity"  # type: ignore[union-attr]
    reward_only = failed and result.policy == "reward_only"  # type: ignore[union-attr]
    out["clustered"] = 0.0 if zero or reward_only else 1.0
    if result is not None:
        out.update({
            "judge_failed": float(result.failed),
            "fallback": float(bool(result.failed and (result.policy or "").startswith("fallback:"))),
            "zero_diversity": float(zero),
            "reward_only": float(reward_only),
            "cache_hit": float(result.cache_hit),
            "requests": float(result.requests),
            "retries": float(result.retries),
            "reasks": float(result.reasks),
        })
    return out


def aggregate_metrics(groups: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One step's figures from its groups' :func:`group_metrics`.

    Diversity keys are means over the groups whose ids are real clusters (``clustered``), so
    groups that got zero diversity (or a reward-only advantage) after a judge failure do not
    drag the curves to 0; the counters are sums. ``groups`` is the number of groups.
    """
    out: dict[str, float] = {"groups": float(len(groups))}
    real = [g for g in groups if g.get("clustered", 1.0)]
    for key in _DIVERSITY:
        values = [g[key] for g in real if key in g]
        if values:
            out[key] = sum(values) / len(values)
    for key, (how, _) in METRIC_KEYS.items():
        if how == "sum":
            values = [g[key] for g in groups if key in g]
            if values:
                out[key] = float(sum(values))
    return out
