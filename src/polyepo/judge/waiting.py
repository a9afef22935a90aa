"""Waiting out a judge outage (the ``wait`` failure policy), with a status line and a limit.

A call that would fail because the judge is down (its retries spent on 5xx, timeouts or
dropped connections, a lasting 429, or an open circuit breaker) waits instead: it retries at
the capped backoff, or sleeps until the breaker's one probe may go, and wakes as soon as any
request gets a reply. While calls wait, a status line is logged every ``status_interval_s``
(logger ``polyepo.judge``, level WARNING: Python prints it on stderr even when no logging is
set up, so it reaches a terminal, a log file or a batch job's output alike). When the outage
has lasted ``max_wait_s`` (from its first failure), the waiting calls raise
:class:`~polyepo.judge.JudgeUnavailableError`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .config import JudgeConfig
from .limits import CircuitBreaker, Health
from .policy import JudgeUnavailableError

log = logging.getLogger("polyepo.judge")


class Waiting:
    """The waiting calls of one client: how many, since when, and the status line."""

    def __init__(self, config: JudgeConfig, breaker: CircuitBreaker, health: Health,
                 make_error: Callable[[float, str | None], JudgeUnavailableError]) -> None:
        self.config, self.breaker, self.health, self.make_error = config, breaker, health, make_error
        self._lock = threading.Lock()
        self._waiters = 0
        self._since: float | None = None  # when the first of the calls now waiting began
        self._status_at = -math.inf

    @contextmanager
    def call(self, waited: list[float]) -> Iterator[CallWait]:
        """The waiting state of one call (``waited[0]`` receives its seconds spent waiting)."""
        state = CallWait(self)
        try:
            yield state
        finally:
            waited[0] += state.leave()

    def ended(self, outage_s: float) -> None:
        """The judge answered after an outage of ``outage_s`` seconds."""
        with self._lock:
            waiters = self._waiters
            self._status_at = time.monotonic()  # no stale status line from calls about to resume
        if waiters:
            log.warning("judge answering again after %.0f s; %d paused call(s) resume", outage_s, waiters)
        else:
            log.info("judge answering again after %.0f s of failures", outage_s)

    def _join(self) -> None:
        with self._lock:
            self._waiters += 1
            if self._since is None:  # a new episode: its first status line goes out at once
                self._since = time.monotonic()
                self._status_at = -math.inf

    def _leave(self) -> None:
        with self._lock:
            self._waiters -= 1
            if self._waiters == 0:
                self._since = None

    def status(self) -> None:
        """Log the status line if one is due."""
        with self._lock:
            now = time.monotonic()
            if not self._waiters or now - self._status_at < self.config.status_interval_s:
                return
            self._status_at = now
            waiters, since = self._waiters, self._since or now
        down = max(self.health.outage_s(), now - since)
        probe = self.breaker.next_probe_in()
        when = "" if probe is None else f", next probe in {probe:.0f} s"
        log.warning("judge unavailable for %.0f s (%s); %d judge call(s) paused until it answers (on_failure=wait)%s; "
                    "stopping after %g s (max_wait_s)", down, self.health.last_error or "no answer", waiters, when,
                    self.config.max_wait_s)

    def next_status_in(self) -> float:
        with self._lock:
            return max(0.01, self._status_at + self.config.status_interval_s - time.monotonic())


class CallWait:
    """One call's side of :class:`Waiting` (see :meth:`Waiting.call`)."""

    def __init__(self, owner: Waiting) -> None:
        self.owner = owner
        self.since: float | None = None

    def start(self) -> None:
        """Enter the waiting state (once); raises when the outage is already too long."""
        if self.since is None:
            self.since = time.monotonic()
            self.owner._join()
        self.check()

    def check(self) -> None:
        """Raise :class:`JudgeUnavailableError` once the outage has lasted ``max_wait_s``."""
        health = self.owner.health
        began = min(health.outage_since or math.inf, self.since or math.inf)
        down = time.monotonic() - began
        if down >= self.owner.config.max_wait_s:
            raise self.owner.make_error(down, health.last_error)

    def until_probe(self) -> None:
        """The breaker refuses requests: wait until its probe may go, or it closes."""
        self.start()
        delay = self.owner.breaker.next_probe_in()
        if delay is None:
            return
        # a probe in flight ends within timeout_s, and its end wakes every waiter
        self._sleep(delay if delay > 0 else self.owner.config.timeout_s + 1.0)

    def pause(self, seconds: float) -> None:
        """Sleep before a retry; a waiting call wakes early when the judge replies to anyone."""
        if self.since is None:
            time.sleep(seconds)
        else:
            self._sleep(seconds)

    def _sleep(self, seconds: float) -> None:
        owner = self.owner
        start = time.monotonic()
        end = start + seconds
        while True:
            now = time.monotonic()
            if now >= end or owner.health.replied_since(start):
                return
            self.check()
            owner.status()
            began = min(owner.health.outage_since or math.inf, self.since or math.inf)
            to_limit = began + owner.config.max_wait_s - time.monotonic()
            owner.breaker.wait(max(0.001, min(end - now, owner.next_status_in(), to_limit)))

    def leave(self) -> float:
        """Leave the waiting state; the seconds this call waited."""
        if self.since is None:
            return 0.0
        self.owner._leave()
        return time.monotonic() - self.since
