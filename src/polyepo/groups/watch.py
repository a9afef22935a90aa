"""A diversity signal that carries no information, noticed: nearly every group's rollouts all
apart, or nearly every group one cluster.

Poly-EPO's diversity term compares the sets of a group by how many strategies they hold. When
the clusterer puts every rollout of nearly every group in a cluster of its own (``exact`` on
sampled text, an ``embedding`` threshold too low), every set is equally diverse; when nearly
every group holds at most one strategy (a clusterer that merges everything, a policy that
samples one answer, rollouts that are all degenerate), every set is equally poor. Either way
the term is constant and the diversity curves are flat, which is easy to miss.

A group is **all apart** when no two of its rollouts share a strategy (degenerate rollouts
aside) and at least two have one; it is **one cluster** when it holds at most one strategy.
:class:`DiversityWatch` pools the groups of the last ``window`` steps and returns one warning,
once, when at least ``fraction`` of at least ``min_groups`` pooled groups are all apart, or one
cluster; groups whose clustering failed and got a stand-in are left out. :class:`GroupTally`
and :func:`diversity_warning` are the test itself, which evaluation applies to all the problems
of a results file. docs/training.md lists the thresholds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ..clustering.base import ClusterResult
from ..clustering.metrics import STAND_IN_POLICIES

#: steps pooled by the training check
WINDOW = 4
#: share of the pooled groups that makes the signal degenerate
FRACTION = 0.9
#: fewer pooled groups than this are not judged
MIN_GROUPS = 8
#: ids that are no strategy besides each group's own degenerate id (the estimators' default)
DEGENERATE = (0, 100)

_ADVICE = {
    "apart": (
        "every set of such a group is equally diverse, so a diversity term cannot tell its sets apart. The clusterer "
        "separates what should be one strategy: try a coarser one (judge; python_ast for code; answer for "
        "final answers), or a higher threshold for embedding, and check it on labelled groups with "
        "`polyepo cluster-eval`"),
    "one": (
        "the sets of such a group differ in no strategy, so a diversity term cannot tell them apart. Either the model "
        "samples one strategy (the samples are alike: a collapse; in training, raise the temperature or "
        "start from a less collapsed model), or its answers have no strategy (degenerate: check the "
        "length limit and the answer format), or the clusterer merges different strategies: try a finer "
        "one (judge; python_ast for code), or a lower threshold for embedding, and check it with "
        "`polyepo cluster-eval`"),
}


@dataclass
class GroupTally:
    """Counts of groups: judged, all apart, one cluster, and (among those) with no strategy at all."""

    groups: int = 0
    apart: int = 0
    one: int = 0
    none: int = 0

    def add(self, ids: Sequence[int], degenerate: Collection[int]) -> None:
        """Count one group from its cluster ids and the ids that are no strategy."""
        strategies = [int(i) for i in ids if int(i) not in degenerate]
        distinct = len(set(strategies))
        self.groups += 1
        self.apart += len(strategies) >= 2 and distinct == len(strategies)
        self.one += distinct <= 1
        self.none += distinct == 0

    def __iadd__(self, other: GroupTally) -> GroupTally:
        self.groups += other.groups
        self.apart += other.apart
        self.one += other.one
        self.none += other.none
        return self


def diversity_warning(tally: GroupTally, *, clusterer: str, where: str, unit: str = "groups",
                      item: str = "rollout", fraction: float = FRACTION, min_groups: int = MIN_GROUPS) -> str | None:
    """The warning when at least ``fraction`` of the tally's groups (at least ``min_groups`` of
    them) are all apart, or one cluster; else None. ``where`` says over what the groups were
    pooled (``"steps 3-6"``), ``unit`` what a group is and ``item`` what it holds."""
    n = tally.groups
    if n < max(min_groups, 1):
        return None
    if tally.apart >= fraction * n:
        return (f"degenerate diversity signal: in {tally.apart} of {n} clustered {unit} ({tally.apart / n:.0%}) "
                f"over {where}, no two {item}s shared a strategy (clusterer {clusterer!r}); {_ADVICE['apart']}")
    if tally.one >= fraction * n:
        empty = f", {tally.none} of them none at all (every {item} degenerate)" if tally.none else ""
        return (f"degenerate diversity signal: {tally.one} of {n} clustered {unit} ({tally.one / n:.0%}) over "
                f"{where} held at most one strategy{empty} (clusterer {clusterer!r}); {_ADVICE['one']}")
    return None


@dataclass
class DiversityWatch:
    """Feed it each step's cluster results with :meth:`observe`; it returns the warning of
    :func:`diversity_warning` once, at the first step whose last ``window`` steps qualify, and
    None at every other step."""

    clusterer: str
    window: int = WINDOW
    fraction: float = FRACTION
    min_groups: int = MIN_GROUPS
    degenerate: Collection[int] = DEGENERATE
    warned: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.steps: deque[tuple[int | None, GroupTally]] = deque(maxlen=max(int(self.window), 1))

    def observe(self, results: Sequence[ClusterResult], step: int | None = None) -> str | None:
        """Take one step's cluster results (one per group); the warning the first time the
        window qualifies, else None."""
        tally = GroupTally()
        for res in results:
            if res.failed and res.policy in STAND_IN_POLICIES:
                continue  # a stand-in, not clusters
            tally.add(res.ids, {*map(int, self.degenerate), int(res.degenerate)})
        self.steps.append((step, tally))
        if self.warned is not None or len(self.steps) < (self.steps.maxlen or 1):
            return None
        pooled = GroupTally()
        for _, t in self.steps:
            pooled += t
        first, last = self.steps[0][0], self.steps[-1][0]
        where = f"steps {first}-{last}" if first is not None and last is not None else f"{len(self.steps)} steps"
        self.warned = diversity_warning(pooled, clusterer=self.clusterer, where=where, fraction=self.fraction,
                                        min_groups=self.min_groups)
        return self.warned
