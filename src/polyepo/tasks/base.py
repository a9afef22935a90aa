"""The task protocol: rows of problems, plus the reward and clusterer that fit them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Task(Protocol):
    """A problem set.

    ``rows(split)`` returns dicts with at least ``"prompt"`` (a string, or a list of chat
    messages) and ``"problem_id"``, plus any columns that the task's reward function reads
    (``test``, ``entry_point``, ``answer`` ...). ``reward`` and ``clusterer`` name the
    registered reward function and clusterer that suit the task, with their options.
    """

    name: str
    splits: Sequence[str]

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]: ...

    @property
    def reward(self) -> Component: ...

    @property
    def clusterer(self) -> Component: ...


@dataclass(frozen=True)
class Component:
    """A registered plug-in chosen by name, with its options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
