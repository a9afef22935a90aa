"""A judge client for any OpenAI-compatible chat endpoint, built to survive a long run.

One :meth:`JudgeClient.complete` call = one judged item: cache look-up, then requests through
the official ``openai`` client with retries (429, 5xx, timeouts, dropped connections; backoff
with jitter), a concurrency limit and an optional requests-per-minute cap, validation of the
reply with re-asks, and a circuit breaker for outages. It never raises for a judge failure:
the :class:`JudgeOutcome` says what happened, and the feature applies its failure policy.
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
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .cache import ReplyCache, cache_key
from .config import JudgeConfig
from .limits import CircuitBreaker, RateLimiter, backoff_delay
from .replies import InvalidReply, reask_message

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
    ``reasks`` the invalid replies sent back.
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


class JudgeStats:
    """Thread-safe counters of everything a client did, for logs and metrics."""

    KEYS = ("calls", "successes", "failures", "cache_hits", "requests", "retries", "reasks")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update({k: v for k, v in counts.items() if v})

    def snapshot(self) -> dict[str, int]:
        """Every counter; ``errors/<kind>`` counts failures by kind."""
        with self._lock:
            out = {k: self._counts.get(k, 0) for k in self.KEYS}
            out.update({k: v for k, v in self._counts.items() if k.startswith("errors/")})
        return out


class _Failure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class JudgeClient:
    """Sends :class:`JudgeRequest` items to one judge model. See the module docstring."""

    def __init__(self, config: JudgeConfig | None = None, *, namespace: str = "judge") -> None:
        self.config = config or JudgeConfig()
        self.namespace = namespace
        self.model = self.config.resolved_model()
        try:
            import openai
        except ImportError:
            raise ImportError("the LLM judge needs the openai package: pip install 'polyepo[judge]'") from None
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=self.config.resolved_base_url(), api_key=self.config.resolved_api_key(),
            timeout=self.config.timeout_s, max_retries=0,  # retries are ours: counted, jittered
        )
        path = self.config.resolved_cache_path()
        self.cache = ReplyCache(path) if path else None
        self.stats = JudgeStats()
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency)
        rpm = self.config.requests_per_minute
        self._rate = RateLimiter(rpm, 60.0) if rpm else None
        self._breaker = CircuitBreaker(self.config.breaker_after, self.config.breaker_cooldown_s)
        self._rng = random.Random(self.config.seed)
        self._json_mode = self.config.json_mode != "off"

    # -- public -------------------------------------------------------------------------

    def key(self, request: JudgeRequest) -> str:
        """The cache key of ``request``: namespace, model, temperature, messages, extras."""
        return cache_key(namespace=self.namespace, model=self.model, temperature=self.config.temperature,
                         messages=request.messages, extra=request.cache_extra)

    def complete(self, request: JudgeRequest) -> JudgeOutcome:
        """Judge one item (never raises for a judge failure; see :class:`JudgeOutcome`)."""
        start = time.monotonic()
        key = self.key(request)
        outcome = self._from_cache(key, request)
        if outcome is None:
            outcome = self._ask(request, key)
        outcome.elapsed_s = time.monotonic() - start
        self.stats.add(calls=1, successes=int(outcome.ok), failures=int(not outcome.ok),
                       cache_hits=int(outcome.cache_hit), requests=outcome.requests,
                       retries=outcome.retries, reasks=outcome.reasks,
                       **({f"errors/{outcome.error_kind}": 1} if outcome.error_kind else {}))
        if not outcome.ok:
            log.warning("judge call failed (%s): %s [requests=%d retries=%d reasks=%d]", outcome.error_kind,
                        outcome.error, outcome.requests, outcome.retries, outcome.reasks)
        return outcome

    def complete_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeOutcome]:
        """Judge many items concurrently (up to ``max_concurrency`` in flight), in order.

        Identical requests in the batch are sent once; the copies report ``cache_hit``.
        """
        keys = [self.key(r) for r in requests]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = sorted(first.values())
        if len(unique) <= 1 or self.config.max_concurrency == 1:
            done = {i: self.complete(requests[i]) for i in unique}
        else:
            with ThreadPoolExecutor(max_workers=min(self.config.max_concurrency, len(unique))) as pool:
                done = dict(zip(unique, pool.map(lambda i: self.complete(requests[i]), unique)))
        out = []
        for i, k in enumerate(keys):
            j = first[k]
            if i == j:
                out.append(done[j])
            else:
                copy = JudgeOutcome(**{**done[j].__dict__, "cache_hit": done[j].ok, "requests": 0,
                                       "retries": 0, "reasks": 0})
                self.stats.add(calls=1, cache_hits=int(copy.ok), successes=int(copy.ok), failures=int(not copy.ok))
                out.append(copy)
        return out

    def close(self) -> None:
        self._client.close()
        if self.cache is not None:
            self.cache.close()

    # -- internals ----------------------------------------------------------------------

    def _from_cache(self, key: str, request: JudgeRequest) -> JudgeOutcome | None:
        if self.cache is None:
            return None
        text = self.cache.get(key)
        if text is None:
            return None
        try:
            return JudgeOutcome(ok=True, value=request.validate(text), cache_hit=True)
        except InvalidReply as e:
            log.warning("cached judge reply no longer validates (%s); asking again", e.reason)
            return None

    def _ask(self, request: JudgeRequest, key: str) -> JudgeOutcome:
        messages = list(request.messages)
        tally = {"requests": 0, "retries": 0}
        reasks = 0
        while True:
            try:
                text = self._send(messages, tally)
            except _Failure as e:
                return JudgeOutcome(ok=False, error=str(e), error_kind=e.kind, reasks=reasks, **tally)
            try:
                value = request.validate(text)
            except InvalidReply as e:
                if reasks >= self.config.max_reasks:
                    return JudgeOutcome(ok=False, error=f"invalid reply after {reasks} re-asks: {e.reason}",
                                        error_kind="invalid_reply", reasks=reasks, **tally)
                log.info("judge reply invalid (%s); asking again", e.reason)
                messages = [*messages, {"role": "assistant", "content": text or ""},
                            {"role": "user", "content": request.reask(e.reason)}]
                reasks += 1
                continue
            if self.cache is not None:
                self.cache.put(key, text, namespace=self.namespace, model=self.model)
            return JudgeOutcome(ok=True, value=value, reasks=reasks, **tally)

    def _send(self, messages: list[Message], tally: dict[str, int]) -> str:
        """One reply's text, retrying transient errors; raises :class:`_Failure` when spent."""
        cfg = self.config
        retry = 0
        while True:
            if not self._breaker.allow():
                raise _Failure("circuit_open", f"judge unavailable: {cfg.breaker_after} calls in a row failed; "
                               f"not sending requests for {cfg.breaker_cooldown_s:g} s")
            if self._rate is not None:
                self._rate.acquire()
            tally["requests"] += 1
            try:
                text = self._post(messages)
                self._breaker.record(True)
                return text
            except _Failure as e:
                if e.kind == "json_mode_off":  # resend at once without response_format
                    continue
                retryable = e.kind in ("rate_limit", "server", "timeout", "connection", "bad_response")
                if not retryable or retry >= cfg.max_retries:
                    self._breaker.record(False)
                    suffix = f" (after {retry} retries)" if retryable else ""
                    raise _Failure(e.kind, f"{e}{suffix}") from None
                wait = backoff_delay(retry, initial=cfg.backoff_initial_s, multiplier=cfg.backoff_multiplier,
                                     cap=cfg.backoff_max_s, jitter=cfg.jitter, rng=self._rng,
                                     retry_after=getattr(e, "retry_after", None))
                log.info("judge request failed (%s: %s); retry %d in %.2f s", e.kind, e, retry + 1, wait)
                retry += 1
                tally["retries"] += 1
                time.sleep(wait)

    def _post(self, messages: list[Message]) -> str:
        """One HTTP request; transport and status errors become :class:`_Failure`."""
        cfg, oa = self.config, self._openai
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
        try:
            with self._slots:
                response = self._client.chat.completions.create(**kwargs)
        except oa.APITimeoutError:
            raise _Failure("timeout", f"no reply within {cfg.timeout_s:g} s") from None
        except oa.APIConnectionError as e:
            raise _Failure("connection", f"connection failed: {e}") from None
        except oa.APIStatusError as e:
            if self._json_mode_rejected(e, json_mode):
                raise _Failure("json_mode_off", "server rejected JSON mode") from None
            raise _status_failure(e) from None
        except (oa.APIResponseValidationError, ValueError, TypeError) as e:
            raise _Failure("bad_response", f"unreadable response from the server: {e}") from None
        return _reply_text(response)

    def _json_mode_rejected(self, error: Any, json_mode: bool) -> bool:
        """In ``auto`` mode, a 400 that names the JSON-mode field turns JSON mode off."""
        if not (json_mode and self.config.json_mode == "auto" and error.status_code == 400):
            return False
        text = f"{error}".lower()
        if "response_format" not in text and "json" not in text:
            return False
        self._json_mode = False
        log.info("the judge server rejected response_format; continuing without JSON mode")
        return True


def _status_failure(error: Any) -> _Failure:
    code = int(error.status_code)
    kind = "rate_limit" if code == 429 else "server" if code >= 500 else "server" if code in (408, 409) else "client"
    failure = _Failure(kind, f"HTTP {code}: {_short(error)}")
    retry_after = error.response.headers.get("retry-after") if error.response is not None else None
    try:
        failure.retry_after = float(retry_after) if retry_after else None  # type: ignore[attr-defined]
    except ValueError:
        failure.retry_after = None  # type: ignore[attr-defined]
    return failure


def _short(error: Any, limit: int = 300) -> str:
    body = getattr(error, "body", None)
    text = str(body.get("message") if isinstance(body, dict) and body.get("message") else error)
    return text if len(text) <= limit else text[:limit] + "..."


def _reply_text(response: Any) -> str:
    if isinstance(response, str):  # some servers return a body the client cannot parse as JSON
        raise _Failure("bad_response", f"response was not a chat completion: {response[:200]!r}")
    choices = getattr(response, "choices", None)
    if not choices:
        raise _Failure("bad_response", "response had no choices")
    content = getattr(choices[0].message, "content", None)
    return content if isinstance(content, str) else ""
