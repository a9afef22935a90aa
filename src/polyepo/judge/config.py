"""Settings of an LLM judge reached through an OpenAI-compatible chat-completions endpoint.

Every option is defined once, here, as a field with its meaning. The endpoint, model and key
come from the environment unless set: ``POLYEPO_JUDGE_BASE_URL`` (or ``OPENAI_BASE_URL``),
``POLYEPO_JUDGE_MODEL``, and the key from the variable named by ``api_key_env``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: Where the reply cache lives unless ``cache_path`` says otherwise.
DEFAULT_CACHE = "~/.cache/polyepo/judge.sqlite"

JSON_MODES = ("auto", "on", "off")


@dataclass
class JudgeConfig:
    """How to reach the judge and how hard to try.

    Works with any server that speaks OpenAI's ``POST /v1/chat/completions``: OpenAI itself,
    vLLM, SGLang, llama.cpp's server, LM Studio, Ollama's OpenAI route...
    """

    model: str | None = None
    """Model name sent to the server; default ``$POLYEPO_JUDGE_MODEL``."""
    base_url: str | None = None
    """Endpoint root, e.g. ``http://127.0.0.1:8000/v1``; default ``$POLYEPO_JUDGE_BASE_URL``,
    then ``$OPENAI_BASE_URL``, then OpenAI's own."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (keys never live in configs). A
    server on localhost without the variable set gets the placeholder key ``EMPTY``."""
    temperature: float = 0.0
    """Sampling temperature of the judge; 0 makes replies repeatable, which the cache assumes."""
    max_tokens: int | None = 4096
    """Upper bound on the reply length (``max_tokens``); None leaves it to the server."""
    seed: int | None = None
    """Sampling seed sent to servers that accept one."""
    json_mode: str = "auto"
    """``on``: always ask for ``response_format={"type": "json_object"}``; ``off``: never;
    ``auto``: ask, and stop asking if the server rejects the field (HTTP 400 naming it)."""
    timeout_s: float = 120.0
    """Seconds one HTTP request may take, from sending it to the last byte of the reply,
    before it counts as a timeout (and is retried); a deadline for the whole request, however
    slowly the reply arrives."""
    max_retries: int = 5
    """Retries of one request after a 429, a 5xx, a timeout or a dropped connection. While the
    judge answers other requests, a failure is the item's own and its retries wait only
    ``backoff_initial_s`` (one bad item does not hold a batch through a long backoff)."""
    backoff_initial_s: float = 1.0
    """Wait before the first retry; doubles (``backoff_multiplier``) with each retry."""
    backoff_multiplier: float = 2.0
    """Growth factor of the wait between retries."""
    backoff_max_s: float = 60.0
    """Cap on one wait (also caps a server's ``Retry-After``)."""
    jitter: float = 0.5
    """Fraction of each wait drawn at random: the wait is ``d * (1 - jitter * U)``, U in [0, 1)."""
    max_concurrency: int = 8
    """Requests in flight at once, across every thread using this client."""
    requests_per_minute: float | None = None
    """Optional cap on requests started in any 60-second window (retries count)."""
    max_reasks: int = 2
    """Times an invalid reply (bad JSON, wrong keys, wrong types) is sent back with the error
    and a request to answer again, before the call counts as failed."""
    reask_excerpt_chars: int = 2000
    """A re-ask quotes the invalid reply up to this many characters (its head and tail), so a
    runaway reply does not make every later request larger; 0 quotes it whole."""
    breaker_after: int = 8
    """After this many consecutive calls failed on server-side errors (5xx, timeouts, failed or
    dropped connections; not 4xx, 429 or invalid replies) the client stops sending requests
    for ``breaker_cooldown_s`` (an outage should not cost every group its whole retry budget);
    0 disables the breaker."""
    breaker_cooldown_s: float = 60.0
    """How long the breaker stays open before exactly one request probes the server again
    (the others wait for its answer; a failed probe opens the breaker for another cool-down)."""
    max_wait_s: float = 1500.0
    """With the ``wait`` failure policy: the longest a judge outage may pause the callers,
    counted from its first failure, before they stop with ``JudgeUnavailableError`` (which
    says how to resume). Without ``wait`` it is not used. A multi-process TRL run lets its other
    processes wait in a collective (``ddp_timeout``) at least this + 300 s: polyepo raises an
    unset ``ddp_timeout`` to that and refuses a shorter one."""
    status_interval_s: float = 30.0
    """While callers wait for the judge (``wait`` policy), a status line (logger
    ``polyepo.judge``, level WARNING, so it reaches stderr without any logging set up) says so
    this often."""
    cache_path: str | None = DEFAULT_CACHE
    """SQLite file of validated replies, so a resumed run re-asks nothing; None or "" turns the
    persistent cache off. ``$POLYEPO_JUDGE_CACHE`` overrides the default."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """Extra JSON fields for servers with their own options (e.g. vLLM's ``guided_json``)."""

    def __post_init__(self) -> None:
        if self.json_mode not in JSON_MODES:
            raise ValueError(f"json_mode must be one of {', '.join(JSON_MODES)}, got {self.json_mode!r}")
        positive = {"timeout_s": self.timeout_s, "backoff_multiplier": self.backoff_multiplier,
                    "max_concurrency": self.max_concurrency, "status_interval_s": self.status_interval_s}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        non_negative = {"max_retries": self.max_retries, "max_reasks": self.max_reasks,
                        "backoff_initial_s": self.backoff_initial_s, "backoff_max_s": self.backoff_max_s,
                        "breaker_after": self.breaker_after, "breaker_cooldown_s": self.breaker_cooldown_s,
                        "max_wait_s": self.max_wait_s, "reask_excerpt_chars": self.reask_excerpt_chars}
        for name, value in non_negative.items():
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")
        if self.requests_per_minute is not None and not self.requests_per_minute > 0:
            raise ValueError(f"requests_per_minute must be > 0 or None, got {self.requests_per_minute!r}")

    @classmethod
    def fields(cls) -> list[str]:
        """Names of every option, for splitting a flat ``**options`` dict."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def split(cls, options: dict[str, Any]) -> tuple[JudgeConfig, dict[str, Any]]:
        """``(JudgeConfig of the judge options, the remaining options)`` from one flat dict."""
        names = set(cls.fields())
        mine = {k: v for k, v in options.items() if k in names}
        return cls(**mine), {k: v for k, v in options.items() if k not in names}

    def resolved_model(self) -> str:
        model = self.model or os.environ.get("POLYEPO_JUDGE_MODEL")
        if not model:
            raise ValueError("the judge needs a model: set model=... or $POLYEPO_JUDGE_MODEL")
        return model

    def resolved_base_url(self) -> str | None:
        return self.base_url or os.environ.get("POLYEPO_JUDGE_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or None

    def resolved_api_key(self) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            return key
        url = self.resolved_base_url()
        if url and urlparse(url).hostname in {"localhost", "127.0.0.1", "::1"}:
            return "EMPTY"
        raise ValueError(
            f"the judge's API key is read from ${self.api_key_env}, which is not set "
            f"(set it, or api_key_env=NAME of another variable)"
        )

    def resolved_cache_path(self) -> Path | None:
        path = self.cache_path
        if path == DEFAULT_CACHE:
            path = os.environ.get("POLYEPO_JUDGE_CACHE", DEFAULT_CACHE)
        return Path(path).expanduser() if path else None
