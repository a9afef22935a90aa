"""A judge client for any OpenAI-compatible chat endpoint, built to survive a long run.

One :meth:`JudgeClient.complete` call = one judged item: cache look-up, then requests through
the official ``openai`` client with retries (429, 5xx, timeouts, dropped connections; backoff
with jitter, ``Retry-After`` honoured), a whole-request deadline, a concurrency limit and an
optional requests-per-minute cap, validation of the reply with re-asks, and a circuit breaker
for outages. It never raises for a failure of the item: the :class:`JudgeOutcome` says what
happened, and the feature applies its failure policy. With ``wait=True`` an outage does not
fail the item: the call blocks until the judge answers again (see :mod:`.waiting`), and only
an outage longer than ``max_wait_s`` raises :class:`~polyepo.judge.JudgeUnavailableError`.
Every event is counted in :class:`JudgeStats` and failures are logged (logger
``polyepo.judge``).

Not specific to any feature: a feature supplies the messages, a ``validate(text) -> value``
function that raises :class:`~polyepo.judge.replies.InvalidReply`, and a namespace.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .cache import ReplyCache, cache_key
from .config import JudgeConfig
from .limits import PROBE, CircuitBreaker, Health, RateLimiter, backoff_delay
from .policy import JudgeUnavailableError
from .replies import InvalidReply, excerpt, reask_message
from .transport import RequestFailure, Transport
from .waiting import Waiting

log = logging.getLogger("polyepo.judge")

Message = dict[str, str]


@dataclass
class JudgeRequest:
    """One item to judge: chat ``messages`` and the ``validate`` function for the reply."""

    messages: list[Message]
    validate: Callable[[str], Any]
    """``text -> value``; raises :class:`InvalidReply` (with a reason for the judge) if unusable."""
    reask: Callable[[str], str] = reask_message
    """``reason -> user message`` sent back after an invalid reply."""
    cache_extra: dict[str, Any] = field(default_factory=dict)
    """Anything beyond the messages and model that changes the right reply (a template id...)."""


@dataclass
class JudgeOutcome:
    """What one judged item came to.

    ``ok`` with ``value`` (the validator's output) on success; otherwise ``error`` (a
    sentence) and ``error_kind``: ``rate_limit`` | ``server`` | ``timeout`` | ``connection`` |
    ``client`` (another 4xx) | ``bad_response`` | ``invalid_reply`` | ``circuit_open``.
    ``requests`` counts HTTP requests sent, ``retries`` the transport retries among them,
    ``reasks`` the invalid replies sent back, ``waited_s`` the seconds spent waiting for the
    judge to come back (``wait=True`` only).
    """

    ok: bool
    value: Any = None
    cache_hit: bool = False
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    error: str | None = None
    error_kind: str | None = None
    elapsed_s: float = 0.0
    waited_s: float = 0.0


class JudgeStats:
    """Thread-safe counters of everything a client did, for logs and metrics."""

    KEYS = ("calls", "successes", "failures", "cache_hits", "requests", "retries", "reasks", "waits")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update({k: v for k, v in counts.items() if v})

    def snapshot(self) -> dict[str, int]:
        """Every counter; ``errors/<kind>`` counts failures by kind; ``waits`` the calls that
        waited for the judge to come back."""
        with self._lock:
            out = {k: self._counts.get(k, 0) for k in self.KEYS}
            out.update({k: v for k, v in self._counts.items() if k.startswith("errors/")})
        return out


class JudgeClient:
    """Sends :class:`JudgeRequest` items to one judge model. See the module docstring."""

    def __init__(self, config: JudgeConfig | None = None, *, namespace: str = "judge") -> None:
        self.config = config or JudgeConfig()
        self.namespace = namespace
        self.model = self.config.resolved_model()
        self.config.resolved_api_key()  # a missing key is a configuration error, raised now
        try:
            import openai
        except ImportError:
            raise ImportError("the LLM judge needs the openai package: pip install 'polyepo[judge]'") from None
        self._transport = Transport(self.config, openai)
        weakref.finalize(self, self._transport.close)
        path = self.config.resolved_cache_path()
        self.cache = ReplyCache(path) if path else None
        self.stats = JudgeStats()
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency)
        rpm = self.config.requests_per_minute
        self._rate = RateLimiter(rpm, 60.0) if rpm else None
        self._breaker = CircuitBreaker(self.config.breaker_after, self.config.breaker_cooldown_s)
        self._health = Health()
        self._waiting = Waiting(self.config, self._breaker, self._health, self._unavailable)
        self._rng = random.Random(self.config.seed)
        self._json_mode = self.config.json_mode != "off"
        self._json_lock = threading.Lock()

    # -- public -------------------------------------------------------------------------

    def key(self, request: JudgeRequest) -> str:
        """The cache key of ``request``: namespace, model, temperature, messages, extras."""
        return cache_key(namespace=self.namespace, model=self.model, temperature=self.config.temperature,
                         messages=request.messages, extra=request.cache_extra)

    def complete(self, request: JudgeRequest, *, wait: bool = False) -> JudgeOutcome:
        """Judge one item; never raises for a failure of the item (see :class:`JudgeOutcome`).

        ``wait=True``: during a judge outage, block until the judge answers again instead of
        failing; raises :class:`~polyepo.judge.JudgeUnavailableError` once the outage has
        lasted ``max_wait_s``.
        """
        start = time.monotonic()
        key = self.key(request)
        outcome = self._from_cache(key, request)
        if outcome is None:
            try:
                outcome = self._ask(request, key, wait)
            except JudgeUnavailableError:
                self.stats.add(calls=1, failures=1, **{"errors/unavailable": 1})
                raise
        outcome.elapsed_s = time.monotonic() - start
        self.stats.add(calls=1, successes=int(outcome.ok), failures=int(not outcome.ok),
                       cache_hits=int(outcome.cache_hit), requests=outcome.requests,
                       retries=outcome.retries, reasks=outcome.reasks, waits=int(outcome.waited_s > 0),
                       **({f"errors/{outcome.error_kind}": 1} if outcome.error_kind else {}))
        if not outcome.ok:
            log.warning("judge call failed (%s): %s [requests=%d retries=%d reasks=%d]", outcome.error_kind,
                        outcome.error, outcome.requests, outcome.retries, outcome.reasks)
        return outcome

    def complete_many(self, requests: Sequence[JudgeRequest], *, wait: bool = False) -> list[JudgeOutcome]:
        """Judge many items concurrently (up to ``max_concurrency`` in flight), in order.

        Identical requests in the batch are sent once; the copies report ``cache_hit``. Each
        item retries on its own, so a slow or failing item holds only its own slot.
        """
        keys = [self.key(r) for r in requests]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = sorted(first.values())
        if len(unique) <= 1 or self.config.max_concurrency == 1:
            done = {i: self.complete(requests[i], wait=wait) for i in unique}
        else:
            with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(unique))) as pool:
                done = dict(zip(unique, pool.map(lambda i: self.complete(requests[i], wait=wait), unique)))
        out = []
        for i, k in enumerate(keys):
            j = first[k]
            if i == j:
                out.append(done[j])
            else:
                copy = JudgeOutcome(**{**done[j].__dict__, "cache_hit": done[j].ok, "requests": 0,
                                       "retries": 0, "reasks": 0, "waited_s": 0.0})
                self.stats.add(calls=1, cache_hits=int(copy.ok), successes=int(copy.ok), failures=int(not copy.ok))
                out.append(copy)
        return out

    @property
    def json_mode(self) -> bool:
        """Whether requests ask for JSON mode now (``auto`` turns it off once if rejected)."""
        return self._json_mode

    def close(self) -> None:
        self._transport.close()
        if self.cache is not None:
            self.cache.close()

    # -- one item -----------------------------------------------------------------------

    def _from_cache(self, key: str, request: JudgeRequest) -> JudgeOutcome | None:
        if self.cache is None:
            return None
        text = self.cache.get(key)
        if text is None:
            return None
        try:
            return JudgeOutcome(ok=True, value=request.validate(text), cache_hit=True)
        except Exception as e:  # InvalidReply, or a validator that cannot read the text at all
            log.warning("cached judge reply no longer validates (%s); asking again", _reason(e))
            return None

    def _ask(self, request: JudgeRequest, key: str, wait: bool) -> JudgeOutcome:
        messages = list(request.messages)
        tally = {"requests": 0, "retries": 0}
        reasks = 0
        waited = [0.0]
        while True:
            try:
                text = self._send(messages, tally, wait, waited)
            except RequestFailure as e:
                return JudgeOutcome(ok=False, error=str(e), error_kind=e.kind, reasks=reasks,
                                    waited_s=waited[0], **tally)
            try:
                value = request.validate(text)
            except Exception as e:  # every unreadable reply is an invalid reply, whatever raised
                reason = _reason(e)
                if reasks >= self.config.max_reasks:
                    return JudgeOutcome(ok=False, error=f"invalid reply after {reasks} re-asks: {reason}",
                                        error_kind="invalid_reply", reasks=reasks, waited_s=waited[0], **tally)
                log.info("judge reply invalid (%s); asking again", reason)
                quoted = excerpt(text or "", self.config.reask_excerpt_chars)
                messages = [*messages, {"role": "assistant", "content": quoted},
                            {"role": "user", "content": request.reask(reason)}]
                reasks += 1
                continue
            if self.cache is not None:
                self._cache_put(key, text)
            return JudgeOutcome(ok=True, value=value, reasks=reasks, waited_s=waited[0], **tally)

    def _cache_put(self, key: str, text: str) -> None:
        try:
            self.cache.put(key, text, namespace=self.namespace, model=self.model)  # type: ignore[union-attr]
        except Exception as e:  # the cache saves requests; a full disk must not fail the item
            log.warning("could not store a judge reply in the cache (%s)", e)

    # -- requests -----------------------------------------------------------------------

    def _send(self, messages: list[Message], tally: dict[str, int], wait: bool, waited: list[float]) -> str:
        """One reply's text, retrying transient errors; raises :class:`RequestFailure` when spent.

        With ``wait``, an outage (or a lasting 429) never spends the budget: the call waits,
        until :meth:`Waiting.check` raises past ``max_wait_s``.
        """
        cfg = self.config
        retry = 0
        streak: float | None = None  # when this call's current run of failures began
        with self._waiting.call(waited) as waiting:
            while True:
                ticket = self._breaker.admit()
                if ticket is None:
                    if not wait:
                        raise RequestFailure("circuit_open", f"judge unavailable: {cfg.breaker_after} calls in a row "
                                             f"failed on server errors; not sending requests for "
                                             f"{cfg.breaker_cooldown_s:g} s")
                    waiting.until_probe()
                    continue
                if self._rate is not None:
                    self._rate.acquire()
                tally["requests"] += 1
                sent = time.monotonic()
                try:
                    text = self._request(messages, ticket)
                except RequestFailure as e:
                    if e.kind == "json_mode_off":  # resend at once without response_format
                        continue
                    if not e.retryable:
                        raise
                    streak = sent if streak is None else streak
                    own = e.kind != "rate_limit" and self._health.replied_since(streak)
                    if retry >= cfg.max_retries:
                        if e.outage and not own:
                            self._breaker.call_failed()
                        if not (wait and not own and (e.outage or e.kind == "rate_limit")):
                            suffix = " (the judge answers other requests)" if own else ""
                            raise RequestFailure(e.kind, f"{e} (after {retry} retries){suffix}") from None
                        waiting.start()
                    delay = backoff_delay(0 if own else retry, initial=cfg.backoff_initial_s,
                                          multiplier=cfg.backoff_multiplier, cap=cfg.backoff_max_s,
                                          jitter=cfg.jitter, rng=self._rng, retry_after=e.retry_after)
                    log.info("judge request failed (%s: %s); retry %d in %.2f s", e.kind, e, retry + 1, delay)
                    retry += 1
                    tally["retries"] += 1
                    waiting.pause(delay)
                    continue
                return text

    def _request(self, messages: list[Message], ticket: str) -> str:
        """One HTTP request, its outcome recorded in the breaker and the health tracker."""
        resolved = False
        try:
            text = self._post(messages)
            resolved = True
            self._answered(replied=True)
            return text
        except RequestFailure as e:
            resolved = True
            if e.outage:
                self._health.failed(str(e))
                if ticket == PROBE:
                    self._breaker.probe_failed()
            else:  # the server answered, if not with a reply (a 4xx, a 429, an unreadable body)
                self._answered(replied=False)
            raise
        finally:
            if ticket == PROBE and not resolved:
                self._breaker.probe_failed()

    def _answered(self, *, replied: bool) -> None:
        self._breaker.answered()
        ended = self._health.answered(replied=replied)
        if ended is not None:
            self._waiting.ended(ended)

    def _post(self, messages: list[Message]) -> str:
        """One HTTP request; transport and status errors become :class:`RequestFailure`."""
        cfg = self.config
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": cfg.temperature}
        if cfg.max_tokens is not None:
            kwargs["max_tokens"] = cfg.max_tokens
        if cfg.seed is not None:
            kwargs["seed"] = cfg.seed
        if cfg.extra_body:
            kwargs["extra_body"] = cfg.extra_body
        json_mode = self._json_mode
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        with self._slots:
            try:
                response = self._transport.send(kwargs)
            except RequestFailure as e:
                if json_mode and self._json_mode_rejected(e):
                    raise RequestFailure("json_mode_off", "server rejected JSON mode", outage=False) from None
                raise
        return _reply_text(response)

    def _json_mode_rejected(self, failure: RequestFailure) -> bool:
        """In ``auto`` mode, a 400 about ``response_format`` turns JSON mode off (said once)."""
        about = failure.about
        if not (self.config.json_mode == "auto" and failure.status == 400
                and ("response_format" in about or "json_object" in about)):
            return False
        with self._json_lock:
            if self._json_mode:
                self._json_mode = False
                log.warning("the judge server refused response_format (%s); continuing without JSON mode for "
                            "the rest of this run (json_mode=auto; replies are still parsed and validated)", failure)
        return True

    def _unavailable(self, outage_s: float, last_error: str | None) -> JudgeUnavailableError:
        """The error that ends a wait longer than ``max_wait_s``: what failed and how to resume."""
        cfg = self.config
        where = cfg.resolved_base_url() or "the OpenAI API"
        cached = (f"Replies received so far are cached in {self.cache.path}, so a rerun asks nothing twice. "
                  if self.cache is not None else "")
        summary = (f"the judge at {where} has not answered for {outage_s:.0f} s (max_wait_s={cfg.max_wait_s:g}); "
                   f"last error: {last_error}. Stopped rather than go on without it.")
        return JudgeUnavailableError(
            f"{summary} {cached}Once the judge answers again, rerun; a training run resumes from its last "
            "checkpoint with `polyepo train --config CONFIG --resume` (a TRL trainer: "
            "`trainer.train(resume_from_checkpoint=True)`). Raise max_wait_s to wait longer.",
            waited_s=outage_s, last_error=last_error, summary=f"{summary} {cached}".strip())


def _reason(error: Exception) -> str:
    if isinstance(error, InvalidReply):
        return error.reason
    if isinstance(error, RecursionError):
        return "the reply is nested too deeply to read"
    return excerpt(f"the reply could not be read ({type(error).__name__}: {error})", 300)


def _reply_text(response: Any) -> str:
    if isinstance(response, str):  # some servers return a body the client cannot parse as JSON
        raise RequestFailure("bad_response", f"response was not a chat completion: {excerpt(response, 200)!r}")
    choices = getattr(response, "choices", None)
    if not choices or not isinstance(choices, list):
        raise RequestFailure("bad_response", "response had no choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    # lone surrogates (a "\ud800" escape in the JSON) could not be cached or sent back: replace them
    return excerpt(content, 0) if isinstance(content, str) else ""

