"""Problem sets: each task yields rows with a ``prompt`` and the columns its reward needs.

Tasks are registered by name in :data:`TASKS` (``load_task("toy_paths")``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry, check_options
from .base import Task

#: name -> factory(**options) -> Task
TASKS: Registry[Callable[..., Task]] = Registry("task")


def load_task(name: str, **options: Any) -> Task:
    """Build the task registered as ``name`` with its options (unknown options are an error
    that lists the valid ones)."""
    factory = TASKS.get(name)
    check_options(factory, options, f"task {name!r}")
    return factory(**options)


# Built-in tasks register themselves on import (kept light: heavy packages load on first use).
from . import humaneval, jsonl, reasoning_gym, rubric_examples, toy_paths  # noqa: E402,F401

__all__ = ["TASKS", "Task", "load_task"]
