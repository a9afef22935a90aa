"""Verifiable and judged rewards with TRL's reward-function contract.

A reward function is ``f(prompts, completions, **columns) -> list[float | None]``: one value
per completion, ``None`` where the function does not apply to that row. Completions may be
strings or TRL's conversational lists of messages. Factories are registered by name in
:data:`REWARDS` (``make_reward("code_tests", timeout_s=5)``); the callables they return carry
a ``last_stats`` dict refreshed on every call (docs/rewards.md lists its keys).

Registered here: ``code_tests`` (:mod:`polyepo.rewards.code`, sandboxed unit tests) and
``math_answer`` (:mod:`polyepo.rewards.math`, math-verify). Importing this package is light:
math-verify and sympy load on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry, check_options

RewardFunction = Callable[..., list]

#: name -> factory(**options) -> RewardFunction
REWARDS: Registry[Callable[..., RewardFunction]] = Registry("reward function")


def column(columns: dict[str, Any], name: str, n: int) -> list[Any]:
    """The values of dataset column ``name`` for ``n`` completions (None for each when absent).

    A column whose length is not ``n`` raises, naming the column.
    """
    values = columns.get(name)
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def make_reward(name: str, **options: Any) -> RewardFunction:
    """Build the reward function registered as ``name`` with its options (unknown options are
    an error that lists the valid ones)."""
    factory = REWARDS.get(name)
    check_options(factory, options, f"reward function {name!r}")
    return factory(**options)


from . import code, math, rubric  # noqa: E402,F401  (register the built-in reward functions; heavy parts load on use)

__all__ = ["REWARDS", "RewardFunction", "column", "make_reward"]
