"""Start-up checks of a whole verl config: what would otherwise fail at the first step, or never.

:func:`check_startup` runs when ``polyepo_sync`` starts (:mod:`polyepo.train.verl.trainer`):
``algorithm.polyepo`` keys and values, estimator options (names and values), ``set_size`` against
``rollout.n``, and the polyepo reward function, built once (an unknown name or option, or a
package it needs that is not installed, fails here with the name). No verl import.
"""

from __future__ import annotations

from typing import Any

from ...advantages import ESTIMATORS, check_option_values, check_options
from .reward import reward_function
from .settings import VerlSettings, plain


def _get(node: Any, path: str, default: Any = None) -> Any:
    for part in path.split("."):
        getter = getattr(node, "get", None)
        node = getter(part, None) if getter else getattr(node, part, None)
        if node is None:
            return default
    return node


def polyepo_estimator(adv_estimator: Any) -> str | None:
    """The polyepo estimator behind verl's ``algorithm.adv_estimator`` (None for verl's own)."""
    name = str(getattr(adv_estimator, "value", adv_estimator))
    if name.startswith("polyepo_") and name[len("polyepo_"):] in ESTIMATORS:
        return name[len("polyepo_"):]
    return name if name in ESTIMATORS and name not in ("grpo", "rloo") else None


def check_startup(config: Any) -> VerlSettings:
    """Check a whole verl config before the first step; returns its ``algorithm.polyepo`` settings.

    Raises ``ValueError`` (or :class:`polyepo.registry.MissingDependencyError`) naming the
    problem: bad ``algorithm.polyepo`` keys or values, estimator options the estimator does not
    take, ``set_size`` above ``rollout.n``, and a polyepo reward function that cannot be built
    (unknown name or option, a package it needs not installed). The clusterer is built by the
    caller, with the same checks.
    """
    settings = VerlSettings.from_config(_get(config, "algorithm"))
    name = polyepo_estimator(_get(config, "algorithm.adv_estimator", ""))
    if name is not None:
        check_options(name, settings.estimator_options)
        n = _get(config, "actor_rollout_ref.rollout.n")
        size = settings.estimator_options.get("set_size")
        if n is not None and isinstance(size, int) and size > int(n):
            raise ValueError(f"algorithm.polyepo.estimator_options.set_size={size} exceeds "
                             f"actor_rollout_ref.rollout.n={n}: a set is drawn from one prompt's rollouts")
        try:  # option values too: one made-up group of rollout.n through the estimator
            check_option_values(name, settings.estimator_options, int(n) if n is not None else 8)
        except ValueError as e:
            raise ValueError(f"algorithm.polyepo.estimator_options for {name!r}: {e}") from None
    kwargs = plain(_get(config, "reward.custom_reward_function.reward_kwargs", {}) or {})
    path = str(_get(config, "reward.custom_reward_function.path", "") or "")
    if kwargs.get("reward") and (path.endswith("polyepo.train.verl.reward") or path.endswith("polyepo/train/verl/reward.py")):
        reward_function(str(kwargs["reward"]), kwargs.get("reward_options"))
    return settings
