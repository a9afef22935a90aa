"""What a feature does when its judge fails: an explicit policy, never a silent default.

Three actions, named in config as text:

* ``"raise"`` (also ``"stop"``): stop with :class:`JudgeFailedError`, a message that says what
  failed and how to choose another policy;
* the feature's neutral answer (``"zero_diversity"`` for clustering; the name is the
  feature's): the failed item contributes no judged signal;
* ``"fallback:NAME"``: an offline replacement registered as NAME computes the answer instead.

The feature applies the policy; this module only parses and names it.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTIONS = ("raise", "neutral", "fallback")


class JudgeFailedError(RuntimeError):
    """A judge call failed and the configured policy is to stop."""


@dataclass(frozen=True)
class FailurePolicy:
    """A parsed failure policy: ``action`` in :data:`ACTIONS`, plus the fallback's name."""

    action: str
    fallback: str | None = None
    neutral_name: str = "neutral"

    @classmethod
    def parse(cls, spec: str | FailurePolicy, *, neutral_name: str = "neutral",
              what: str = "on_failure") -> FailurePolicy:
        """``"raise"``, ``"stop"``, ``neutral_name`` or ``"fallback:NAME"`` -> policy."""
        if isinstance(spec, FailurePolicy):
            return spec
        text = str(spec).strip()
        if text in ("raise", "stop"):
            return cls("raise", neutral_name=neutral_name)
        if text in (neutral_name, "neutral"):
            return cls("neutral", neutral_name=neutral_name)
        if text.startswith("fallback:") and text.split(":", 1)[1].strip():
            return cls("fallback", text.split(":", 1)[1].strip(), neutral_name=neutral_name)
        raise ValueError(
            f"{what} must be 'raise' (stop the run), '{neutral_name}' or 'fallback:NAME' "
            f"(an offline backend), got {spec!r}"
        )

    @property
    def label(self) -> str:
        """The policy as it is logged: ``raise``, the neutral name, or ``fallback:NAME``."""
        if self.action == "fallback":
            return f"fallback:{self.fallback}"
        return self.neutral_name if self.action == "neutral" else "raise"
