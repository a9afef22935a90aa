"""LLM judges over OpenAI-compatible chat endpoints, shared by every judged feature.

A feature (strategy clustering, rubric rewards) builds :class:`JudgeRequest` items (its own
messages and reply validator) and sends them through one :class:`JudgeClient`, which brings
retries with backoff and jitter, a concurrency limit, an optional requests-per-minute cap,
JSON mode, validation with re-asks, a persistent SQLite cache, a circuit breaker, waiting out
outages (``wait=True``) and failure counting. The feature then applies its explicit
:class:`FailurePolicy` to failed items.

Importing this package is light; ``openai`` is imported when a client is built.
"""

from __future__ import annotations

from .cache import ReplyCache, cache_key
from .client import JudgeClient, JudgeOutcome, JudgeRequest, JudgeStats
from .config import JudgeConfig
from .policy import FailurePolicy, JudgeFailedError, JudgeUnavailableError
from .replies import InvalidReply, excerpt, parse_json_object, reask_message

__all__ = [
    "FailurePolicy",
    "InvalidReply",
    "JudgeClient",
    "JudgeConfig",
    "JudgeFailedError",
    "JudgeOutcome",
    "JudgeRequest",
    "JudgeStats",
    "JudgeUnavailableError",
    "ReplyCache",
    "cache_key",
    "excerpt",
    "parse_json_object",
    "reask_message",
]
