"""Pacing of judge requests: backoff with jitter, ``Retry-After``, a requests-per-window
limit, a circuit breaker, and the judge's health (when it last answered).

All of them are thread-safe and use the real clock (``time.monotonic``); windows and cool-downs
are parameters so tests can run them at a fraction of a second.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import UTC


def backoff_delay(
    retry: int, *, initial: float, multiplier: float, cap: float, jitter: float,
    rng: random.Random | None = None, retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number ``retry`` (0 for the first retry).

    ``d = min(cap, initial * multiplier**retry)``, then ``d * (1 - jitter * U)`` with U uniform
    in [0, 1), so concurrent callers hit by the same outage do not retry in lock-step. A
    server's ``Retry-After`` (seconds) raises the wait to at least that value, still capped.
    """
    d = min(cap, initial * multiplier ** min(retry, 64))
    d *= 1.0 - jitter * (rng or random).random()
    if retry_after is not None and retry_after > 0:
        d = max(d, min(cap, retry_after))
    return d


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds a server asks to wait, from ``retry-after-ms``, or ``Retry-After`` given either
    as seconds or as an HTTP date; None when absent or unreadable; 0 for a date in the past."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _seconds(ms)
        if value is not None:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    value = _seconds(raw)
    if value is not None:
        return value
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _seconds(text: str) -> float | None:
    try:
        value = float(text.strip())
    except (ValueError, AttributeError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


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


PASS, PROBE = "pass", "probe"


class CircuitBreaker:
    """Closed, open, half-open: stops requests to a judge that is down, and lets exactly one
    probe find out when it is back.

    Closed: requests pass. After ``threshold`` consecutive calls failed on server-side errors
    (:meth:`call_failed`), it opens for ``cooldown_s``: :meth:`admit` returns None and callers
    fail fast (or wait). Then it is half-open: the first caller gets :data:`PROBE` and sends
    one request; every other caller is still refused until that probe ends. An answer from the
    server (:meth:`answered`) closes the breaker; a failed probe (:meth:`probe_failed`) opens
    it for another ``cooldown_s``. ``threshold=0`` disables it (always :data:`PASS`).
    """

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = int(threshold)
        self.cooldown_s = float(cooldown_s)
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        self._cond = threading.Condition()

    def admit(self) -> str | None:
        """:data:`PASS`, :data:`PROBE` (this caller is the one probe), or None (refused)."""
        if self.threshold <= 0:
            return PASS
        with self._cond:
            if self._open_until is None:
                return PASS
            if self._probing or time.monotonic() < self._open_until:
                return None
            self._probing = True
            return PROBE

    def answered(self) -> None:
        """The server answered a request (with or without an error of the caller's making)."""
        with self._cond:
            self._failures = 0
            self._open_until = None
            self._probing = False
            self._cond.notify_all()

    def probe_failed(self) -> None:
        """The probe met a server-side failure: open for another cool-down."""
        with self._cond:
            self._probing = False
            self._open_until = time.monotonic() + self.cooldown_s
            self._cond.notify_all()

    def call_failed(self) -> None:
        """A call spent its retries on server-side failures (5xx, timeouts, connections)."""
        if self.threshold <= 0:
            return
        with self._cond:
            self._failures += 1
            if self._failures >= self.threshold and self._open_until is None:
                self._open_until = time.monotonic() + self.cooldown_s
                self._cond.notify_all()

    def next_probe_in(self) -> float | None:
        """Seconds until a probe may go (0 when one may go now); None when closed."""
        with self._cond:
            if self._open_until is None:
                return None
            return max(0.0, self._open_until - time.monotonic())

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when the breaker changes state."""
        with self._cond:
            self._cond.wait(max(0.0, timeout))

    @property
    def is_open(self) -> bool:
        """True while requests are refused (open, or half-open with a probe in flight)."""
        with self._cond:
            return self._open_until is not None and (self._probing or time.monotonic() < self._open_until)


class Health:
    """When the judge last replied, and since when it has not answered at all (one per client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_reply = -math.inf
        self.outage_since: float | None = None
        self.last_error: str | None = None

    def answered(self, *, replied: bool) -> float | None:
        """Record an answer (``replied``: a chat completion, not an error status); returns how
        long the outage it ends lasted (None if there was none)."""
        with self._lock:
            now = time.monotonic()
            if replied:
                self.last_reply = now
            since, self.outage_since = self.outage_since, None
            return None if since is None else now - since

    def failed(self, error: str) -> None:
        """Record a server-side failure (the outage starts at the first one after an answer)."""
        with self._lock:
            if self.outage_since is None:
                self.outage_since = time.monotonic()
            self.last_error = error

    def replied_since(self, t: float) -> bool:
        """True if the judge replied to some request after monotonic time ``t``."""
        with self._lock:
            return self.last_reply > t

    def outage_s(self) -> float:
        """Seconds since the current outage began (0 when the judge is answering)."""
        with self._lock:
            return 0.0 if self.outage_since is None else time.monotonic() - self.outage_since
