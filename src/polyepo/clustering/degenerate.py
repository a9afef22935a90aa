"""Offline checks for degenerate responses: empty, too short, symbol soup, repetition loops.

Deliberately conservative: a buggy but genuine attempt is a strategy, not degenerate (a weak
judge sending such attempts to the degenerate cluster was one of seed 002's problems). What
these checks do NOT catch: fluent off-task text, keyboard mash made of letters ("asdf qwer"),
a wrong answer dressed as reasoning; the LLM judge or a task-specific key must decide those.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class DegenerateCheck:
    """Thresholds of :meth:`reason`; the defaults flag only clear cases."""

    min_chars: int = 1
    """Fewer non-blank characters than this is degenerate ("too_short")."""
    min_alnum_frac: float = 0.25
    """Below this fraction of letters and digits among non-blank characters: "symbols"."""
    repeat_min_chars: int = 400
    """Only texts at least this long are checked for repetition loops."""
    max_compression: float = 0.08
    """A long text that zlib compresses below this ratio is a loop: "repetition"."""

    def reason(self, text: str | None) -> str | None:
        """Why ``text`` is degenerate ("empty", "too_short", "symbols", "repetition"), or None."""
        if text is None or not text.strip():
            return "empty"
        compact = "".join(text.split())
        if len(compact) < self.min_chars:
            return "too_short"
        if sum(c.isalnum() for c in compact) < self.min_alnum_frac * len(compact):
            return "symbols"
        data = text.encode("utf-8", "replace")
        if len(data) >= self.repeat_min_chars and len(zlib.compress(data, 9)) < self.max_compression * len(data):
            return "repetition"
        return None

    def __call__(self, text: str | None) -> bool:
        return self.reason(text) is not None


#: The default check used by the offline backends.
DEFAULT_CHECK = DegenerateCheck()
