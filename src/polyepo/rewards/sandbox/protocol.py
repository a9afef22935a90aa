"""Wire formats shared by the host pool and the sandbox server, and output comparison.

Every message between processes is a *frame*: a 4-byte big-endian length, then the payload.
Host <-> server payloads are JSON. The runner's report channel uses one-byte tags (below)
followed by a frame. All reads are exact (``os.read`` until n bytes), never buffered, so a
process never holds bytes that belong to the next reader of the same pipe.
"""

from __future__ import annotations

import json
import os
import re
import struct
from decimal import Decimal, InvalidOperation

#: a run's work directory on the host (isolation rlimits): PREFIX<supervisor>-s<server>-...
WORKDIR_PREFIX = "polyepo-run-"

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30

# Report channel tags, runner -> supervisor.
TAG_PROGRAM_DONE = b"P"  # the program ran to its end; send the test
TAG_TEST_DONE = b"T"  # the test ran to its end; send the nonce
TAG_PROOF = b"K"  # payload: the nonce, echoed
TAG_FAILED = b"F"  # payload: why the test failed (assertion or exception inside the test)
TAG_ERROR = b"E"  # payload: "kind\nmessage" (kind: exception, exit, memory, syntax, threads, processes)

#: Every status a run can end with. ``passed`` is the only one that earns a reward.
STATUSES = ("passed", "failed", "error", "timeout", "memory", "output_limit", "unserializable", "sandbox_error")


class ProtocolError(Exception):
    """A peer broke the framing (truncated frame, oversize length, bad JSON)."""


def read_exact(fd: int, n: int) -> bytes | None:
    """Read exactly ``n`` bytes; ``None`` on EOF before the first byte; ProtocolError if cut short."""
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            if got == 0:
                return None
            raise ProtocolError(f"stream ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes | None:
    """One frame's payload, or ``None`` on a clean EOF."""
    head = read_exact(fd, _HEADER.size)
    if head is None:
        return None
    (n,) = _HEADER.unpack(head)
    if n > MAX_FRAME:
        raise ProtocolError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    body = read_exact(fd, n) if n else b""
    if body is None:
        raise ProtocolError("stream ended inside a frame")
    return body


def frame(payload: bytes) -> bytes:
    """Length-prefixed ``payload``."""
    return _HEADER.pack(len(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a blocking ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_json(fd: int, obj: object) -> None:
    """Write ``obj`` as one JSON frame."""
    write_all(fd, frame(json.dumps(obj).encode()))


def read_json(fd: int) -> object | None:
    """Read one JSON frame; ``None`` on EOF."""
    body = read_frame(fd)
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError as e:
        raise ProtocolError(f"bad JSON frame: {e}") from None


def parse_reports(buffer: bytearray) -> list[tuple[bytes, bytes]]:
    """Pop every complete ``tag + frame`` from ``buffer`` (in place) and return them in order.

    Raises ProtocolError on an unknown tag or an oversize frame: the report channel is open to
    the program, so garbage there means the program wrote to it.
    """
    out = []
    while len(buffer) >= 1 + _HEADER.size:
        tag = bytes(buffer[:1])
        if tag not in (TAG_PROGRAM_DONE, TAG_TEST_DONE, TAG_PROOF, TAG_FAILED, TAG_ERROR):
            raise ProtocolError(f"unknown report tag {tag!r}")
        (n,) = _HEADER.unpack(buffer[1:1 + _HEADER.size])
        if n > 1 << 16:
            raise ProtocolError(f"report of {n} bytes is too long")
        end = 1 + _HEADER.size + n
        if len(buffer) < end:
            break
        out.append((tag, bytes(buffer[1 + _HEADER.size:end])))
        del buffer[:end]
    return out


def report(tag: bytes, payload: bytes = b"") -> bytes:
    """Encode one report: tag, then the framed payload."""
    return tag + frame(payload)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.rstrip().split("\n")]


_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(token: str) -> Decimal | None:
    if not _NUMBER.fullmatch(token):
        return None
    try:
        return Decimal(token)
    except InvalidOperation:
        return None


def _token_equal(actual: str, expected: str, tol: float) -> bool:
    """Equal text; else, for a numeric expected token, equal numbers (decimal arithmetic, no
    rounding): exactly for an integer, within ``tol`` (absolute or relative) for a float literal."""
    if actual == expected:
        return True
    e = _number(expected)
    a = _number(actual)
    if e is None or a is None:
        return False
    if _INTEGER.fullmatch(expected):
        return a == e
    bound = Decimal(repr(float(tol)))
    return abs(a - e) <= max(bound * max(abs(a), abs(e)), bound)


def outputs_match(actual: str, expected: str, float_tol: float | None = None) -> bool:
    """LiveCodeBench-style comparison of a program's stdout with the expected output.

    Lines are compared after removing trailing whitespace (spaces, tabs, ``\\r``) from each
    line and trailing blank lines from the end; leading whitespace and blank lines in between
    matter. With ``float_tol``, lines are compared token by token (split on whitespace): where
    the expected token is a float literal (``0.5``, ``1e-9``), a number within ``float_tol``
    (absolute or relative) matches; where it is an integer, only the same number does (``7``
    or ``7.0``, never ``1000000000`` for ``1000000007``). Numbers are compared as decimals,
    never rounded through binary floats.
    """
    a, e = _lines(actual), _lines(expected)
    if a == e:
        return True
    if float_tol is None or len(a) != len(e):
        return False
    for la, le in zip(a, e):
        ta, te = la.split(), le.split()
        if len(ta) != len(te) or not all(_token_equal(x, y, float_tol) for x, y in zip(ta, te)):
            return False
    return True
