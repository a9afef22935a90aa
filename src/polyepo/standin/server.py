"""A scripted OpenAI-compatible chat server on loopback, for tests and demos of judge code.

:class:`ChatServer` is a real HTTP server (stdlib ``http.server``, one thread per request)
bound to 127.0.0.1 that implements ``POST /v1/chat/completions`` with the response shape of
the real API, so judge code is exercised through the official ``openai`` client end to end.
Each request is answered by the next scripted action (:meth:`ChatServer.push`) or, when the
script is empty, by ``responder(request_body)``; the default responder is the stand-in judge
(:class:`polyepo.standin.judge.StandInJudge`), which answers polyepo's clustering and rubric
prompts. It records every request body and the most requests it saw in flight at once.

What it does not cover: streaming, tool calls, authentication, real model behaviour (the
replies are whatever the test scripts), HTTP/1.1 keep-alive (it speaks HTTP/1.0).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .actions import Action, Raw, Reply, Status

__all__ = ["Action", "ChatServer", "Raw", "Reply", "Status"]


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # accept bursts of concurrent clients (the default backlog is 5)
    daemon_threads = True


class ChatServer:
    """See the module docstring. Use as a context manager; ``base_url`` ends in ``/v1``."""

    def __init__(self, responder: Callable[[dict[str, Any]], Action] | None = None,
                 *, reject_response_format: bool = False, port: int = 0, keep_requests: bool = True) -> None:
        self.responder = responder or _standin
        self.reject_response_format = reject_response_format
        self.keep_requests = keep_requests
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Action] = deque()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *actions: Action) -> None:
        """Queue actions answering the next requests, in order."""
        with self._lock:
            self._script.extend(actions)

    def start(self) -> ChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_action(self, body: dict[str, Any]) -> Action:
        with self._lock:
            if self.keep_requests:
                self.requests.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.reject_response_format and "response_format" in body:
                return Status(400, "response_format is not supported by this server")
            if self._script:
                return self._script.popleft()
        return self.responder(body)

    def _done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, _error_body("not found", 404))
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    self._send(400, _error_body("request body is not JSON", 400))
                    return
                action = server._next_action(body)
                try:
                    time.sleep(action.delay_s)
                    self._answer(action, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    server._done()

            def _answer(self, action: Action, body: dict[str, Any]) -> None:
                if isinstance(action, Reply):
                    self._send(200, completion_json(body, action.content, action.finish_reason))
                elif isinstance(action, Status):
                    self._send(action.code, _error_body(action.message, action.code), action.headers)
                else:
                    self._send(action.code, action.body, content_type=action.content_type)

            def _send(self, code: int, payload: bytes, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                send(self, code, payload, headers, content_type)

        return Handler


def send(handler: BaseHTTPRequestHandler, code: int, payload: bytes, headers: dict[str, str] | None = None,
         content_type: str = "application/json") -> None:
    """Answer ``handler``'s request: status, content type and length, ``headers``, ``payload``."""
    handler.send_response(code)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    for k, v in (headers or {}).items():
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(payload)
    handler.wfile.flush()


_default_judge: Any = None


def _standin(body: dict[str, Any]) -> Action:
    """The default responder: one shared stand-in judge (python_ast clusters), built on first use."""
    global _default_judge
    if _default_judge is None:
        from .judge import StandInJudge

        _default_judge = StandInJudge()
    return _default_judge(body)


def completion_json(body: dict[str, Any], content: str, finish_reason: str = "stop") -> bytes:
    """The JSON of a chat completion answering request ``body`` with ``content``."""
    return json.dumps({
        "id": f"chatcmpl-test-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test-model"),
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }).encode()


def _error_body(message: str, code: int) -> bytes:
    return json.dumps({"error": {"message": message, "type": "test_error", "param": None, "code": code}}).encode()


def fast_options(server: ChatServer, **overrides: Any) -> dict[str, Any]:
    """:class:`~polyepo.judge.JudgeConfig` options aimed at ``server``: tiny backoffs, no
    persistent cache, no breaker, so failure paths run in milliseconds."""
    options: dict[str, Any] = dict(model="test-judge", base_url=server.base_url, cache_path=None,
                                   backoff_initial_s=0.01, backoff_max_s=0.05, max_retries=2, timeout_s=5.0,
                                   breaker_after=0)
    options.update(overrides)
    return options


def last_user_message(body: dict[str, Any]) -> str:
    """Text of the last user turn of a recorded request body."""
    return next((m.get("content", "") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
