"""A scheduled outage of a loopback responder: rehearse the judge going down in the middle of a run.

:class:`Outage` wraps any responder of :class:`~polyepo.standin.ChatServer` (the stand-in judge,
a test's script): it answers the first ``after`` requests through the responder, then every
request with an error status (503 by default) for ``seconds`` seconds, counted from the first
request it refuses, then through the responder again. ``polyepo judge-standin --outage
AFTER:SECONDS`` serves the stand-in judge this way, so a training configuration's failure
policy can be watched through an outage before a real one costs a run (docs/clustering.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .actions import Action, Status


class Outage:
    """``responder`` with an outage of ``seconds`` seconds after ``after`` requests (see the module).

    ``refused`` counts the requests answered with the error; ``began`` and ``ended`` are the
    outage's ``time.monotonic()`` bounds once it has begun (``ended`` lies ahead while it lasts);
    ``log`` (if set) is called with a line when it begins and when it is over.
    """

    def __init__(self, responder: Callable[[dict[str, Any]], Action], *, after: int, seconds: float,
                 status: int = 503) -> None:
        if after < 0 or not seconds > 0:
            raise ValueError(f"an outage needs after >= 0 requests and seconds > 0, got {after!r} and {seconds!r}")
        self.responder, self.after, self.seconds, self.status = responder, int(after), float(seconds), int(status)
        self.seen = 0
        self.refused = 0
        self.began: float | None = None
        self.log: Callable[[str], None] | None = None
        self._over_said = False
        self._lock = threading.Lock()

    def end(self) -> None:
        """End the outage now (or, before it began, call it off)."""
        with self._lock:
            if self.began is None:
                self.began = time.monotonic()
                self._over_said = True
            self.seconds = max(0.0, time.monotonic() - self.began)

    def __call__(self, body: dict[str, Any]) -> Action:
        with self._lock:
            self.seen += 1
            now = time.monotonic()
            said = None
            if self.began is None and self.seen > self.after:
                self.began = now
                said = f"outage: answering HTTP {self.status} for {self.seconds:g} s (after {self.after} requests)"
            down = self.began is not None and now < self.began + self.seconds
            if down:
                self.refused += 1
            elif self.began is not None and not self._over_said:
                self._over_said = True
                said = f"outage over after {self.refused} refused requests; answering again"
        if said and self.log is not None:
            self.log(said)
        if down:
            return Status(self.status, f"stand-in outage: the judge is down for {self.began + self.seconds - now:.1f} s more")
        return self.responder(body)


def parse_outage(text: str) -> tuple[int, float]:
    """``"AFTER:SECONDS"`` -> ``(after, seconds)``; a clear error otherwise."""
    after, sep, seconds = text.partition(":")
    try:
        value = (int(after), float(seconds))
    except ValueError:
        value = None
    if not sep or value is None or value[0] < 0 or not value[1] > 0:
        raise ValueError(f"--outage expects AFTER:SECONDS (requests answered first, then seconds of HTTP 503), "
                         f"e.g. 96:20; got {text!r}")
    return value
