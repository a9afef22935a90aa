"""Pacing of judge requests: backoff with jitter, a requests-per-window limit, a breaker.

All three are thread-safe and use the real clock (``time.monotonic``); the window and the
cool-down are parameters so tests can run them at a fraction of a second.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque


def backoff_delay(
    retry: int, *, initial: float, multiplier: float, cap: float, jitter: float,
    rng: random.Random | None = None, retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry).

    ``d = min(cap, initial * multiplier**retry)``, then ``d * (1 - jitter * U)`` with U uniform
    in [0, 1), so concurrent callers hit by the same outage do not retry in lock-step. A
    server's ``Retry-After`` (seconds) raises the wait to at least that value, still capped.
    """
    d = min(cap, initial * multiplier**retry)
    d *= 1.0 - jitter * (rng or random).random()
    if retry_after is not None and retry_after > 0:
        d = max(d, min(cap, retry_after))
    return d


class RateLimiter:
    """At most ``limit`` acquisitions in any sliding window of ``period_s`` seconds.

    ``acquire()`` blocks until a slot is free. ``RateLimiter(rpm, 60)`` is a requests-per-
    minute cap shared by every thread holding the limiter.
    """

    def __init__(self, limit: float, period_s: float = 60.0) -> None:
        if not limit > 0 or not period_s > 0:
            raise ValueError(f"limit and period_s must be > 0, got {limit!r} and {period_s!r}")
        self.limit = max(1, int(limit))
        self.period_s = float(period_s)
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot; returns the seconds spent waiting for it."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                while self._starts and self._starts[0] <= now - self.period_s:
                    self._starts.popleft()
                if len(self._starts) < self.limit:
                    self._starts.append(now)
                    return waited
                pause = self._starts[0] + self.period_s - now
            time.sleep(max(pause, 1e-3))
            waited += max(pause, 1e-3)


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive failures, for ``cooldown_s`` seconds.

    While open, :meth:`allow` is False. When the cool-down has passed, calls go through again
    (the first success closes the breaker; another failure reopens it at once).
    ``threshold=0`` disables it.
    """

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = int(threshold)
        self.cooldown_s = float(cooldown_s)
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        if self.threshold <= 0:
            return True
        with self._lock:
            return time.monotonic() >= self._open_until

    def record(self, ok: bool) -> None:
        if self.threshold <= 0:
            return
        with self._lock:
            if ok:
                self._failures = 0
                self._open_until = 0.0
                return
            self._failures += 1
            if self._failures >= self.threshold:
                self._open_until = time.monotonic() + self.cooldown_s

    @property
    def is_open(self) -> bool:
        return not self.allow()
