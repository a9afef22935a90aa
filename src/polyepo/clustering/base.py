"""The clustering protocol shared by every backend (LLM judge, python_ast, embedding, ...).

A backend turns the N responses of one prompt into N integer strategy ids. Ids of real
strategies are 1, 2, ... in order of first appearance (never 0, never the degenerate id, so
they mean the same thing under either degenerate convention of the advantages); responses
with no strategy (empty, gibberish, off-task) get the reserved degenerate id.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
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
    into "all distinct". ``requests``/``retries``/``reasks`` count HTTP requests, transport
    retries and re-asked invalid replies (judge backends; 0 elsewhere). ``degenerate`` is the
    id that marks degenerate responses in ``ids``.
    """

    ids: list[int]
    backend: str
    cache_hit: bool = False
    retries: int = 0
    failed: bool = False
    policy: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    requests: int = 0
    reasks: int = 0
    degenerate: int = DEGENERATE


@dataclass
class Group:
    """One prompt, its N responses, and per-group columns (``context``) a backend may read."""

    prompt: str
    responses: list[str]
    context: dict[str, Any] = field(default_factory=dict)


GroupLike = Group | Mapping[str, Any] | tuple


def as_group(obj: GroupLike) -> Group:
    """A :class:`Group` from a Group, a ``(prompt, responses[, context])`` tuple, or a mapping
    with ``prompt`` and ``responses`` (its other keys become the context)."""
    if isinstance(obj, Group):
        return obj
    if isinstance(obj, tuple):
        if len(obj) not in (2, 3):
            raise ValueError(f"a group tuple is (prompt, responses[, context]), got {len(obj)} items")
        return Group(str(obj[0]), [str(r) for r in obj[1]], dict(obj[2]) if len(obj) == 3 else {})
    if isinstance(obj, Mapping):
        if "responses" not in obj:
            raise ValueError(f"a group needs a 'responses' list; got keys {sorted(obj)}")
        context = {k: v for k, v in obj.items() if k not in ("prompt", "responses")}
        return Group(_text(obj.get("prompt", "")), [_text(r) for r in obj["responses"]], context)
    raise ValueError(f"a group is a Group, a (prompt, responses) tuple or a mapping, got {type(obj).__name__}")


def prompt_key(problem_id: Any, prompt: Any) -> str:
    """The key of a prompt that stays the same across steps: its problem id, else the prompt
    text (what the historical ``outcome_explore`` counts answers per; TRL, verl, dry runs)."""
    return str(problem_id) if problem_id is not None else prompt_text(prompt)


def prompt_text(prompt: Any) -> str:
    """The text a clusterer sees as the prompt: the string itself, or the user turns of a chat
    (joined by blank lines; every turn's content when there is no user turn).

    One definition for training (TRL, verl) and evaluation, so that a judge sees, and caches,
    the same prompt text in all of them. Accepts any sequence of message dicts (NumPy arrays
    of them too, as verl stores them).
    """
    if isinstance(prompt, str):
        return prompt
    if hasattr(prompt, "tolist") and not isinstance(prompt, (list, tuple)):
        prompt = prompt.tolist()
    if isinstance(prompt, (list, tuple)):
        messages = [m for m in prompt if isinstance(m, Mapping)]
        users = [str(m.get("content", "")) for m in messages if m.get("role", "user") == "user"]
        return "\n\n".join(users or [str(m.get("content", "")) for m in messages])
    raise ValueError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat messages: keep the text of the last one
        return _text(value[-1].get("content", "")) if value and isinstance(value[-1], Mapping) else ""
    if isinstance(value, Mapping):
        return _text(value.get("content", ""))
    return "" if value is None else str(value)


@runtime_checkable
class Clusterer(Protocol):
    """One group in, one :class:`ClusterResult` out; many groups at once with ``cluster_many``."""

    name: str

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        """Cluster the N ``responses`` to ``prompt``; ``context`` carries per-group columns."""
        ...

    def cluster_many(self, groups: Sequence[GroupLike]) -> list[ClusterResult]:
        """One result per group, in order (backends that call a server do it concurrently)."""
        ...


class BaseClusterer:
    """Shared behaviour: the configurable degenerate id and a ``cluster_many`` that loops."""

    name = "base"

    def __init__(self, *, degenerate: int = DEGENERATE) -> None:
        if isinstance(degenerate, bool) or not isinstance(degenerate, int):
            raise ValueError(f"degenerate must be an integer cluster id, got {degenerate!r}")
        self.degenerate = degenerate

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        raise NotImplementedError

    def cluster_many(self, groups: Sequence[GroupLike]) -> list[ClusterResult]:
        out = []
        for g in map(as_group, groups):
            out.append(self.cluster(g.prompt, g.responses, **g.context))
        return out

    def result(self, keys: Sequence[Hashable | None], **meta: Any) -> ClusterResult:
        """A result whose ids relabel ``keys`` (None = degenerate) with :func:`relabel`."""
        return ClusterResult(ids=relabel(keys, self.degenerate), backend=self.name, degenerate=self.degenerate, **meta)


def relabel(keys: Sequence[Hashable | None], degenerate: int = DEGENERATE) -> list[int]:
    """Strategy keys -> ids 1, 2, ... in order of first appearance; None -> ``degenerate``.

    Equal keys get equal ids. Ids skip 0 and ``degenerate`` so they never collide with either
    degenerate convention. Example: ``relabel(["b", "a", None, "b"]) == [1, 2, 100, 1]``.
    """
    ids: dict[Hashable, int] = {}
    out = []
    nxt = 1
    for key in keys:
        if key is None:
            out.append(degenerate)
            continue
        if key not in ids:
            while nxt == degenerate or nxt == 0:
                nxt += 1
            ids[key] = nxt
            nxt += 1
        out.append(ids[key])
    return out


#: name -> factory(**options) -> Clusterer
CLUSTERERS: Registry[Callable[..., Clusterer]] = Registry("clusterer")


def make_clusterer(name: str, **options: Any) -> Clusterer:
    """Build the clusterer registered as ``name`` with its options (unknown names and options
    list the valid ones; a missing package is named)."""
    return CLUSTERERS.build(name, **options)
