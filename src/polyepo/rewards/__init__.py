"""Verifiable and judged rewards with TRL's reward-function contract.

A reward function is ``f(prompts, completions, **columns) -> list[float | None]``: one value
per completion, ``None`` where the function does not apply to that row. Factories are
registered by name in :data:`REWARDS` (``make_reward("code_tests", timeout_s=5)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry

RewardFunction = Callable[..., list]

#: name -> factory(**options) -> RewardFunction
REWARDS: Registry[Callable[..., RewardFunction]] = Registry("reward function")


def make_reward(name: str, **options: Any) -> RewardFunction:
    """Build the reward function registered as ``name`` with its options."""
    return REWARDS.get(name)(**options)


from . import rubric  # noqa: E402,F401  (registers "rubric"; openai loads when a judge is built)

__all__ = ["REWARDS", "RewardFunction", "make_reward"]
