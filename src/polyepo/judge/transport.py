"""One HTTP request to the judge, bounded by a deadline, its failures sorted by kind.

Requests go through the official ``openai`` package's asynchronous client on one event loop
per client (a background thread, started at the first request), so that ``timeout_s`` bounds
the **whole** request: ``asyncio.wait_for`` cancels it at the deadline, however slowly the
reply trickles in (a per-read timeout would let a reply sent one byte per second live for
ever). Callers stay synchronous: :meth:`Transport.send` blocks the calling thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from .config import JudgeConfig
from .limits import parse_retry_after
from .replies import excerpt

#: failures that retrying may cure
RETRYABLE = ("rate_limit", "server", "timeout", "connection", "bad_response")
#: failures that say the judge is down (the only ones the circuit breaker counts)
OUTAGE = ("server", "timeout", "connection")


class RequestFailure(Exception):
    """A request that brought no reply: ``kind`` says why (see :class:`~polyepo.judge.JudgeOutcome`).

    ``outage`` is True for server-side failures (a 5xx or 408, a timeout, a failed or dropped
    connection); ``retry_after`` is the server's requested wait in seconds, if it gave one.
    """

    def __init__(self, kind: str, message: str, *, outage: bool | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.outage = kind in OUTAGE if outage is None else outage
        self.retry_after = retry_after
        self.status: int | None = None  # the HTTP status, if the server sent one
        self.about = ""  # the server's whole error text and ``param``, lower case (what it is about)

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


class Transport:
    """The ``openai`` async client on a private event loop; see the module docstring."""

    def __init__(self, config: JudgeConfig, openai_module: Any) -> None:
        self.config = config
        self._oa = openai_module
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._pid = 0

    def send(self, kwargs: dict[str, Any]) -> Any:
        """The chat completion for ``kwargs``; raises :class:`RequestFailure` on any failure."""
        oa, limit = self._oa, self.config.timeout_s
        loop, client = self._start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(client.chat.completions.create(**kwargs), limit), loop)
        try:
            # the loop cancels the request at the deadline; the extra margin only guards the loop
            return future.result(limit + 10.0)
        except (TimeoutError, oa.APITimeoutError):  # the deadline, or the client's own timeout
            raise RequestFailure("timeout", f"no complete reply within {limit:g} s (timeout_s)") from None
        except oa.APIConnectionError as e:
            raise RequestFailure("connection", f"connection failed: {excerpt(str(e), 300)}") from None
        except oa.APIStatusError as e:
            raise status_failure(e) from None
        except (oa.APIResponseValidationError, oa.OpenAIError, ValueError, TypeError, RecursionError) as e:
            raise RequestFailure("bad_response", f"unreadable response from the server: {_describe(e)}") from None
        except Exception as e:  # anything else the HTTP stack raises is a failed request, not a crash
            raise RequestFailure("connection", f"request failed: {_describe(e)}") from None
        finally:
            future.cancel()

    def close(self) -> None:
        """Close the HTTP client and stop the loop (a later :meth:`send` starts them again)."""
        with self._lock:
            loop, client, self._loop, self._client = self._loop, self._client, None, None
        if loop is None or self._pid != os.getpid():
            return
        try:
            asyncio.run_coroutine_threadsafe(client.close(), loop).result(5.0)
        except Exception:  # closing is best effort: the loop goes away anyway
            pass
        loop.call_soon_threadsafe(loop.stop)

    def _start(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():  # first use, or a forked child
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="polyepo-judge-http", daemon=True)
                thread.start()
                cfg = self.config
                self._client = self._oa.AsyncOpenAI(
                    base_url=cfg.resolved_base_url(), api_key=cfg.resolved_api_key(),
                    timeout=cfg.timeout_s, max_retries=0,  # retries are the client's: counted, jittered
                )
                self._loop, self._pid = loop, os.getpid()
            return self._loop, self._client


def status_failure(error: Any) -> RequestFailure:
    """The :class:`RequestFailure` of an HTTP error status (429, 5xx, 4xx)."""
    code = int(error.status_code)
    kind = "rate_limit" if code == 429 else "server" if code >= 500 or code in (408, 409) else "client"
    headers = error.response.headers if getattr(error, "response", None) is not None else None
    failure = RequestFailure(kind, f"HTTP {code}: {error_text(error)}", outage=code >= 500 or code == 408,
                             retry_after=parse_retry_after(headers))
    body = getattr(error, "body", None)
    param = body.get("param") if isinstance(body, dict) else None
    failure.status = code
    failure.about = f"{param if isinstance(param, str) else ''} {_describe(error)}".lower()
    return failure


def error_text(error: Any, limit: int = 300) -> str:
    """The server's error message (or the exception's text), at most ``limit`` characters."""
    body = getattr(error, "body", None)
    message = body.get("message") if isinstance(body, dict) else None
    return excerpt(message if isinstance(message, str) and message else _describe(error), limit)


def _describe(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        text = ""
    return excerpt(f"{type(error).__name__}: {text}" if text else type(error).__name__, 300)
