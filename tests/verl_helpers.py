"""Small real plug-ins with known answers for the verl bridge tests (no verl needed here).

- ``exact_answer`` reward: 1.0 if the completion, stripped, equals the row's ``answer``
  column, 0.0 otherwise, None when the row has no ``answer`` (not applicable).
- ``prefix`` clusterer: responses with the same first ``length`` characters share an id;
  ids 1, 2, ... in order of first appearance; an empty response is degenerate (100).
- ``broken`` clusterer: reports every group as failed and applies the "zero diversity"
  policy (every response degenerate), as a judge outage would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from polyepo.clustering import CLUSTERERS, DEGENERATE, ClusterResult
from polyepo.rewards import REWARDS


def exact_answer_reward(**_options: Any):
    def reward(prompts: Sequence[Any], completions: Sequence[str], answer: Sequence[Any] | None = None, **_cols: Any):
        if answer is None:
            return [None] * len(completions)
        return [None if a is None else float(c.strip() == str(a)) for c, a in zip(completions, answer)]

    return reward


@dataclass
class PrefixClusterer:
    length: int = 1
    name: str = "prefix"
    calls: int = 0
    seen_context_keys: tuple[str, ...] = ()

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        self.calls += 1
        self.seen_context_keys = tuple(sorted(context))
        ids: dict[str, int] = {}
        out = []
        for r in responses:
            key = r.strip()[: self.length]
            out.append(DEGENERATE if not key else ids.setdefault(key, len(ids) + 1))
        return ClusterResult(ids=out, backend=self.name)


@dataclass
class BrokenClusterer:
    name: str = "broken"

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        return ClusterResult(
            ids=[DEGENERATE] * len(responses), backend=self.name, failed=True,
            policy="zero_diversity", error="judge unreachable",
        )


def prefix_ids(responses: Sequence[str], length: int = 1) -> list[int]:
    """The ids PrefixClusterer gives one group (for expected values in tests)."""
    return PrefixClusterer(length=length).cluster("", responses).ids


@contextmanager
def registered() -> Iterator[None]:
    """Register the test plug-ins for the duration of a test."""
    REWARDS.register("exact_answer", overwrite=True)(exact_answer_reward)
    CLUSTERERS.register("prefix", overwrite=True)(PrefixClusterer)
    CLUSTERERS.register("broken", overwrite=True)(BrokenClusterer)
    try:
        yield
    finally:
        for reg, name in ((REWARDS, "exact_answer"), (CLUSTERERS, "prefix"), (CLUSTERERS, "broken")):
            reg._items.pop(name, None)
