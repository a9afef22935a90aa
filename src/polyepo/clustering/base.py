"""The clustering protocol shared by every backend (LLM judge, python_ast, embedding, ...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..registry import Registry

#: Reserved cluster id for responses with no real strategy (empty, gibberish, off-task).
DEGENERATE = 100


@dataclass
class ClusterResult:
    """Cluster ids of one group plus what happened while computing them.

    ``ids[i]`` is the strategy id of response i. ``failed`` is True when the backend could
    not cluster the group and ``policy`` says what was done instead (for example
    ``"fallback:python_ast"`` or ``"zero_diversity"``); a failure is never silently turned
    into "all distinct".
    """

    ids: list[int]
    backend: str
    cache_hit: bool = False
    retries: int = 0
    failed: bool = False
    policy: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Clusterer(Protocol):
    """One group in, one :class:`ClusterResult` out."""

    name: str

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        """Cluster the N ``responses`` to ``prompt``; ``context`` carries per-group columns."""
        ...


#: name -> factory(**options) -> Clusterer
CLUSTERERS: Registry[Callable[..., Clusterer]] = Registry("clusterer")


def make_clusterer(name: str, **options: Any) -> Clusterer:
    """Build the clusterer registered as ``name`` with its options."""
    return CLUSTERERS.get(name)(**options)
