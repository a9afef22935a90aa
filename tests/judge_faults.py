"""A fault-injecting OpenAI-compatible chat server on 127.0.0.1, for the judge client's tests.

A real HTTP/1.1 server (stdlib ``http.server``, keep-alive, one thread per connection) that
answers ``POST /v1/chat/completions`` with the real API's response shape, so the client is
exercised through the official ``openai`` package end to end. Every request is answered by
``handler(seen) -> Action``; ``server.fault`` (an action, or None) overrides the handler for
every request while set, which is how a test takes the judge down and brings it back.

Faults: error statuses with any headers (``Retry-After`` in seconds or as an HTTP date),
arbitrary bodies (HTML, truncated JSON), a reply trickled a few bytes at a time, a
connection dropped without an answer, a hang. Every request is recorded with its arrival
time; the most requests in flight at once is kept.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from polyepo.standin.actions import Raw
from polyepo.standin.server import completion_json, send


@dataclass
class Reply:
    """A 200 chat completion with ``content``, after ``delay_s``."""

    content: str
    delay_s: float = 0.0


@dataclass
class Status:
    """An error status with an OpenAI-style error body (``param`` included when given)."""

    code: int
    message: str = "injected error"
    headers: dict[str, str] = field(default_factory=dict)
    param: str | None = None
    delay_s: float = 0.0


@dataclass
class Trickle:
    """A 200 chat completion with ``content`` whose body is sent ``chunk`` bytes every ``every_s``."""

    content: str
    every_s: float = 0.2
    chunk: int = 1


@dataclass
class Drop:
    """Close the connection without answering, after ``delay_s`` (a hang when it is long)."""

    delay_s: float = 0.0


Action = Reply | Status | Raw | Trickle | Drop


@dataclass
class Seen:
    """One request as the server received it."""

    body: dict[str, Any]
    at: float
    size: int

    @property
    def user(self) -> str:
        """Text of the last user turn."""
        return next((m.get("content", "") for m in reversed(self.body.get("messages", []))
                     if m.get("role") == "user"), "")


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = True


class FaultServer:
    """See the module docstring. A context manager; ``base_url`` ends in ``/v1``."""

    def __init__(self, handler: Callable[[Seen], Action] | None = None) -> None:
        self.handler = handler or (lambda seen: Status(500, "no handler"))
        self.fault: Action | None = None
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.aborted = 0  # replies the client hung up on before they were complete
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Judge options aimed at this server with short waits (tests need not wait minutes)."""
        opts: dict[str, Any] = dict(model="fault-judge", base_url=self.base_url, cache_path=None, timeout_s=5.0,
                                    max_retries=2, backoff_initial_s=0.01, backoff_max_s=0.05, jitter=0.0,
                                    breaker_after=0, breaker_cooldown_s=0.3, max_wait_s=20.0,
                                    status_interval_s=0.2)
        opts.update(overrides)
        return opts

    def _arrive(self, seen: Seen) -> Action:
        with self._lock:
            self.requests.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.fault
        return fault if fault is not None else self.handler(seen)

    def _left(self, aborted: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            self.aborted += int(aborted)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    body = {}
                action = server._arrive(Seen(body, time.monotonic(), len(raw)))
                aborted = False
                try:
                    self._answer(action, body)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    aborted = True
                    self.close_connection = True
                finally:
                    server._left(aborted)

            def _answer(self, action: Action, body: dict[str, Any]) -> None:
                time.sleep(getattr(action, "delay_s", 0.0))
                if isinstance(action, Drop):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif isinstance(action, Reply):
                    self._send(200, completion_json(body, action.content))
                elif isinstance(action, Status):
                    error = {"message": action.message, "type": "injected", "param": action.param,
                             "code": action.code}
                    self._send(action.code, json.dumps({"error": error}).encode(), action.headers)
                elif isinstance(action, Raw):
                    self._send(action.code, action.body, content_type=action.content_type)
                else:
                    self._trickle(action, completion_json(body, action.content))

            def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                send(self, code, payload, headers, content_type)

            def _trickle(self, action: Trickle, payload: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.flush()
                for i in range(0, len(payload), action.chunk):
                    self.wfile.write(payload[i:i + action.chunk])
                    self.wfile.flush()
                    time.sleep(action.every_s)

        return Handler


_BLOCK = re.compile(r"<response (\d+)>\n(.*?)\n</response \1>", re.DOTALL)


def shown(seen: Seen) -> list[str]:
    """The responses a clustering request shows the judge (the task's block, not the examples)."""
    task = seen.body["messages"][0]["content"].split("## Your task")[-1]
    return [m.group(2) for m in _BLOCK.finditer(task)]


def tag_reply(seen: Seen) -> str:
    """The right clustering reply when each response starts with its strategy tag (``A: ...``;
    ``JUNK`` is degenerate)."""
    ids: dict[str, int] = {}
    out = {}
    for i, text in enumerate(shown(seen), 1):
        tag = text.split(":")[0].strip()
        out[str(i)] = {"reasoning": f"Macro: {tag}. Micro: {tag}.",
                       "cluster_id": 100 if tag == "JUNK" else ids.setdefault(tag, len(ids) + 1)}
    return json.dumps(out)


def tag_judge(seen: Seen) -> Action:
    """A healthy judge for tagged responses."""
    return Reply(tag_reply(seen))
