"""What a loopback chat server answers a request with: a reply, an error status, or raw bytes.

Shared by the scripted test server (:mod:`.testing`) and the stand-in judge (:mod:`.standin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reply:
    """A 200 chat completion whose message content is ``content``, sent after ``delay_s``."""

    content: str
    delay_s: float = 0.0
    finish_reason: str = "stop"


@dataclass
class Status:
    """An error status (429, 500, 400 ...) with an OpenAI-style error body."""

    code: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Raw:
    """Arbitrary bytes as the body (e.g. a truncated, non-JSON 200 response)."""

    body: bytes
    code: int = 200
    content_type: str = "application/json"
    delay_s: float = 0.0


Action = Reply | Status | Raw
