"""What a feature does when its judge fails: an explicit policy, never a silent default.

Four actions, named in config as text:

* ``"wait"``: while the judge is down (5xx, timeouts, refused or dropped connections, 429s
  past the retry budget), the call blocks, logging a status line, until the judge answers
  again; after ``max_wait_s`` it stops with :class:`JudgeUnavailableError`, which says how to
  resume. Failures that are the item's own (an invalid reply after the re-asks, a 4xx) then go
  to a second policy of the feature's choosing;
* ``"raise"`` (also ``"stop"``): stop with :class:`JudgeFailedError`, a message that says what
  failed and how to choose another policy;
* one of the feature's neutral answers (clustering: ``"zero_diversity"``, ``"reward_only"``):
  the failed item contributes no judged signal;
* ``"fallback:NAME"``: an offline replacement registered as NAME computes the answer instead.

The feature applies the policy; this module only parses and names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..settings import did_you_mean

ACTIONS = ("wait", "raise", "neutral", "fallback")


class JudgeFailedError(RuntimeError):
    """A judge call failed and the configured policy is to stop."""


class JudgeUnavailableError(JudgeFailedError):
    """The judge has not answered for longer than ``max_wait_s`` while callers waited for it.

    ``waited_s`` is the length of the outage so far, ``last_error`` the last failure seen,
    ``summary`` the sentence saying so (the message adds how to go on); a trainer that stops on
    it sets ``checkpoint``, the checkpoint a resumed run starts from (None: none was written).
    """

    def __init__(self, message: str, *, waited_s: float = 0.0, last_error: str | None = None,
                 summary: str | None = None, checkpoint: str | None = None) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.last_error = last_error
        self.summary = summary if summary is not None else message
        self.checkpoint = checkpoint



@dataclass(frozen=True)
class FailurePolicy:
    """A parsed failure policy: ``action`` in :data:`ACTIONS`, plus the fallback's name, or
    (action ``neutral``) the name of the neutral answer."""

    action: str
    fallback: str | None = None
    neutral_name: str = "neutral"

    @classmethod
    def parse(cls, spec: str | FailurePolicy, *, neutral_name: str | Sequence[str] = "neutral",
              what: str = "on_failure", allow_wait: bool = True) -> FailurePolicy:
        """``"wait"``, ``"raise"``, ``"stop"``, a neutral name or ``"fallback:NAME"`` -> policy.

        ``neutral_name`` is the feature's neutral answer, or several (the first is the one
        ``"neutral"`` means); ``allow_wait=False`` refuses ``wait`` (for a second policy)."""
        if isinstance(spec, FailurePolicy):
            return spec
        names = (neutral_name,) if isinstance(neutral_name, str) else tuple(neutral_name)
        text = str(spec).strip()
        if text in ("raise", "stop"):
            return cls("raise", neutral_name=names[0])
        if text == "wait" and allow_wait:
            return cls("wait", neutral_name=names[0])
        if text in (*names, "neutral"):
            return cls("neutral", neutral_name=names[0] if text == "neutral" else text)
        if text.startswith("fallback:") and text.split(":", 1)[1].strip():
            return cls("fallback", text.split(":", 1)[1].strip(), neutral_name=names[0])
        valid = [*(["wait"] if allow_wait else []), "raise", *names, "fallback:NAME"]
        hint = did_you_mean(text, valid)
        meanings = {"wait": "pause until the judge answers again", "raise": "stop the run",
                    "fallback:NAME": "an offline backend"}
        listed = ", ".join(f"'{v}'" + (f" ({meanings[v]})" if v in meanings else "") for v in valid)
        raise ValueError(f"{what} must be one of {listed}; got {spec!r}{hint}")

    @property
    def label(self) -> str:
        """The policy as it is logged: ``wait``, ``raise``, the neutral name, or ``fallback:NAME``."""
        if self.action == "fallback":
            return f"fallback:{self.fallback}"
        return self.neutral_name if self.action == "neutral" else self.action
