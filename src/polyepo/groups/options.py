"""The group step's settings, defined once.

:class:`GroupOptions` is a dataclass mixin: ``PolyEPOConfig`` (TRL) and ``VerlSettings``
(verl's ``algorithm.polyepo``) inherit its fields, so both engines take the same settings
with the same defaults and the same help text (``metadata["help"]``, which the CLI prints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ..advantages import SINGLETONS
from ..settings import help_field

#: ``unscorable`` policies: what the step does with a rollout every reward function declined.
UNSCORABLE = ("drop", "zero", "raise")


@dataclass
class GroupOptions:
    """How the group step treats unscorable rollouts, lone rollouts and failed clustering, and when
    the engines cluster (``overlap_clustering``)."""

    unscorable: str = help_field(
        "drop",
        "A rollout every reward function declined (None): drop = left out of its group (advantage 0; "
        "set_size shrinks to the rows left), zero = scored 0.0 and kept, raise = stop the step.",
    )
    singletons: str = help_field(
        "zero",
        "A group that enters the estimator with one rollout: zero = advantage 0 (nothing to compare "
        "with), reward = its reward (baseline 0, verl's grpo convention), estimator = run the estimator.",
    )
    max_failed_group_fraction: float = help_field(
        0.5,
        "Stop the step with an error when more than this fraction of its clustered groups failed "
        "(the clusterer's on_failure policy was applied); 1.0 never stops.",
    )
    correct_threshold: float = help_field(
        1.0, "A rollout counts as correct in the diversity metrics when its reward is at least this.",
    )
    overlap_clustering: bool = help_field(
        True,
        "Cluster a step's groups while their rewards are computed (both mostly wait on other machines: "
        "the judge, the sandbox). TRL: on a background thread of the main process, from before the reward "
        "functions run to after; verl: each group as soon as its rollouts are scored, while others are still "
        "generated. false: clustering starts after the rewards (one after the other).",
    )

    def check_group_options(self) -> None:
        """Raise ``ValueError`` naming the first bad group-step setting."""
        if self.unscorable not in UNSCORABLE:
            raise ValueError(f"unscorable must be one of {', '.join(UNSCORABLE)}, got {self.unscorable!r}")
        if self.singletons not in SINGLETONS:
            raise ValueError(f"singletons must be one of {', '.join(SINGLETONS)}, got {self.singletons!r}")
        try:
            fraction = float(self.max_failed_group_fraction)
        except (TypeError, ValueError):
            fraction = math.nan
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"max_failed_group_fraction must be in [0, 1], got {self.max_failed_group_fraction!r}")
        try:
            ok = math.isfinite(float(self.correct_threshold))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"correct_threshold must be a finite number, got {self.correct_threshold!r}")
        if not isinstance(self.overlap_clustering, bool):
            raise ValueError(f"overlap_clustering must be true or false, got {self.overlap_clustering!r}")

    def group_options(self) -> GroupOptions:
        """Just the group-step settings (from a subclass such as ``PolyEPOConfig``)."""
        return GroupOptions(**{f.name: getattr(self, f.name) for f in fields(GroupOptions)})


def group_option_names() -> list[str]:
    """The names of the group-step settings."""
    return [f.name for f in fields(GroupOptions)]
