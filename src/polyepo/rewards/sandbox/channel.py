"""The narrow channel between the test process and the candidate process: plain data only.

The test never runs in the program's interpreter. The test process calls the program's
functions through proxies; each call crosses a socket as a message of *plain data*: None,
bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset, and
instances of classes that the trusted side itself defined (the task's helper code, e.g.
LeetCode's ``ListNode``), rebuilt there from their fields. Nothing else crosses: no pickle,
no code, no object whose methods the program wrote. A value that is not plain data is
refused with :class:`Unserializable`.

Encoding (JSON, flat, so nesting depth never grows with the data): a message is
``{"t": [entry, ...], "v": value}``. A *value* is a JSON scalar (null, true/false, a string,
an integer below 2**63, a finite float) or ``[index]``, a reference to an entry of the table.
Entries::

    ["l", [v...]] list     ["t", [v...]] tuple     ["s", [v...]] set    ["S", [v...]] frozenset
    ["d", [[k, v]...]] dict  ["y", b64] bytes   ["Y", b64] bytearray   ["i", hex] big int
    ["f", "nan" | "inf" | "-inf"] float         ["c", re, im] complex
    ["o", class name, [[field, v]...]] object of a class the receiver knows
    ["h", handle] an object that lives in the candidate process (made by calling a class)
    ["m", sender id, entry] "your own object number <sender id>, now holding <entry>"

Shared and cyclic structures keep their shape (every container is one entry, referenced as
often as it occurs). ``m`` entries carry in-place changes back: the candidate answers a call
with the call's arguments as they are after it, and each argument object the test process
sent is updated in place, so tests that check a mutated argument work unchanged.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

_HEADER = struct.Struct(">I")
MAX_MESSAGE = 256 << 20  # bytes; a bigger message is refused
_SMALL_INT = 1 << 63
_SCALARS = (str, type(None), bool)
_FLOAT_SPECIAL = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


class Unserializable(BaseException):
    """A value that is not plain data was about to cross, or a message was malformed.

    A ``BaseException``: a test's ``except Exception`` must not swallow it.
    """


class ChannelClosed(BaseException):
    """The peer process is gone (end of stream)."""


# -- framing -------------------------------------------------------------------------------------

def send(sock: socket.socket, obj: object) -> None:
    """Send one JSON message (length-prefixed)."""
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    if len(data) > MAX_MESSAGE:
        raise Unserializable(f"a message of {len(data)} bytes exceeds the channel's limit of {MAX_MESSAGE}")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise ChannelClosed("the other process closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> Any:
    """Receive one message; Unserializable if it is not valid JSON of a sane size."""
    (n,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    if n > MAX_MESSAGE:
        raise Unserializable(f"a message of {n} bytes exceeds the channel's limit of {MAX_MESSAGE}")
    body = _read_exact(sock, n)
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise Unserializable(f"malformed message: {type(e).__name__}") from None


# -- encoding ------------------------------------------------------------------------------------

def _fields(obj: object) -> list[list]:
    """An object's attributes: its ``__dict__`` and any ``__slots__`` that are set."""
    out: dict[str, object] = {}
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out[name] = getattr(obj, name)
    d = getattr(obj, "__dict__", None)
    if isinstance(d, dict):
        out.update(d)
    return [[k, v] for k, v in out.items()]


class Encoder:
    """Turns values into a message. One encoder per message.

    ``objects(obj) -> (kind, payload) | None`` decides about instances of non-builtin types:
    ``("o", class name)`` to send their fields, ``("h", handle)`` to send a handle, None to
    refuse. ``originals`` maps ``id(obj)`` to the sender id of objects that came from the peer
    (their entries are wrapped in ``m``).
    """

    def __init__(self, objects: Callable[[object], tuple[str, object] | None] | None = None,
                 originals: dict[int, int] | None = None) -> None:
        self.objects = objects or (lambda obj: None)
        self.originals = originals or {}
        self.table: list[Any] = []
        self.index: dict[int, int] = {}
        self.keep: list[object] = []  # keeps encoded objects alive so their ids stay unique
        self.todo: list[tuple[object, int]] = []

    def message(self, value: object) -> dict:
        """``{"t": table, "v": value}`` for ``value``."""
        root = self.value(value)
        while self.todo:
            obj, i = self.todo.pop()
            entry = self._entry(obj)
            self.table[i] = ["m", self.originals[id(obj)], entry] if id(obj) in self.originals else entry
        return {"t": self.table, "v": root}

    def value(self, obj: object) -> object:
        t = type(obj)
        if t in _SCALARS:
            return obj
        if t is int and -_SMALL_INT < obj < _SMALL_INT:  # type: ignore[operator]
            return obj
        if t is float and obj == obj and obj not in (float("inf"), float("-inf")):
            return obj
        key = id(obj)
        if key in self.index:
            return [self.index[key]]
        i = len(self.table)
        self.index[key] = i
        self.keep.append(obj)
        self.table.append(None)
        self.todo.append((obj, i))
        return [i]

    def _entry(self, obj: object) -> list:
        t, v = type(obj), self.value
        if t is list:
            return ["l", [v(x) for x in obj]]  # type: ignore[attr-defined]
        if t is tuple:
            return ["t", [v(x) for x in obj]]  # type: ignore[attr-defined]
        if t is dict:
            return ["d", [[v(k), v(x)] for k, x in obj.items()]]  # type: ignore[attr-defined]
        if t is set or t is frozenset:
            return ["s" if t is set else "S", [v(x) for x in obj]]  # type: ignore[attr-defined]
        if t is bytes or t is bytearray:
            return ["y" if t is bytes else "Y", base64.b64encode(obj).decode()]  # type: ignore[arg-type]
        if t is int:
            return ["i", hex(obj)]  # type: ignore[arg-type]
        if t is float:
            return ["f", repr(obj)]
        if t is complex:
            return ["c", v(obj.real), v(obj.imag)]  # type: ignore[attr-defined]
        decision = self.objects(obj)
        if decision is None:
            raise Unserializable(f"a {t.__name__} is not plain data")
        kind, payload = decision
        if kind == "h":
            return ["h", payload]
        return ["o", payload, [[name, v(x)] for name, x in _fields(obj)]]


# -- decoding ------------------------------------------------------------------------------------

_MUTABLE = {"l": list, "d": dict, "s": set, "Y": bytearray}


class Decoder:
    """Turns a message into values. One decoder per message.

    ``make_object(name) -> instance`` builds an empty instance of a known class (or raises
    Unserializable); ``handle(h) -> object`` resolves handles; ``originals[sender id]`` holds
    this side's own objects that ``m`` entries update in place.
    """

    def __init__(self, make_object: Callable[[str], object], handle: Callable[[object], object],
                 originals: dict[int, object] | None = None) -> None:
        self.make_object, self.handle = make_object, handle
        self.originals = originals or {}
        self.received: dict[int, object] = {}  # entry index -> object (mutable entries only)

    def message(self, msg: object) -> object:
        try:
            return self._message(msg)
        except Unserializable:
            raise
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, OverflowError) as e:
            raise Unserializable(f"malformed value: {type(e).__name__}: {str(e)[:200]}") from None

    def _message(self, msg: object) -> object:
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), list):
            raise Unserializable("malformed message")
        table: list = msg["t"]
        self.table = table
        self.built: dict[int, object] = {}
        fill = []
        for i, entry in enumerate(table):  # 1: shells of every mutable entry and object
            if not isinstance(entry, list) or not entry or not isinstance(entry[0], str):
                raise Unserializable(f"malformed entry {i}")
            tid = None
            if entry[0] == "m":
                tid, entry = entry[1], entry[2]
                table[i] = entry
            tag = entry[0]
            if tag in _MUTABLE or tag == "o":
                shell = self._shell(tag, entry, tid)
                self.built[i] = shell
                self.received[i] = shell
                fill.append(i)
            elif tag == "h":
                self.built[i] = self.handle(entry[1])
        for i in range(len(table)):  # 2: immutable entries, children first
            if i not in self.built:
                self._build(i)
        order = sorted(fill, key=lambda i: {"o": 0, "l": 1, "Y": 1, "d": 2, "s": 3}[table[i][0]])
        for i in order:  # 3: contents of the shells: objects, lists, dicts, then sets (they hash)
            self._fill(self.built[i], table[i])
        return self.value(msg.get("v"))

    def _shell(self, tag: str, entry: list, tid: object) -> object:
        if tid is None:
            return self.make_object(str(entry[1])) if tag == "o" else _MUTABLE[tag]()
        if not isinstance(tid, int) or tid not in self.originals:
            raise Unserializable(f"unknown original object {tid!r}")
        original = self.originals[tid]
        expected = _MUTABLE.get(tag)
        if (expected is not None and type(original) is not expected) or (
                tag == "o" and type(original).__name__ != entry[1]):
            raise Unserializable(f"object {tid} changed its type to {entry[1] if tag == 'o' else tag!r}")
        return original

    def value(self, v: object) -> object:
        if type(v) is list:
            if len(v) != 1 or type(v[0]) is not int:
                raise Unserializable("malformed reference")
            i = v[0]
            if i not in self.built:
                raise Unserializable(f"reference to an entry not built yet ({i})")
            return self.built[i]
        if type(v) in (str, int, float, bool, type(None)):
            if type(v) is int and not -_SMALL_INT < v < _SMALL_INT:
                raise Unserializable("an integer out of the inline range")
            return v
        raise Unserializable(f"malformed value of type {type(v).__name__}")

    def _children(self, entry: list) -> list:
        tag = entry[0]
        if tag in ("t", "S"):
            return [x[0] for x in entry[1] if type(x) is list and len(x) == 1 and type(x[0]) is int]
        if tag == "c":
            return [x[0] for x in entry[1:] if type(x) is list and len(x) == 1 and type(x[0]) is int]
        return []

    def _build(self, start: int) -> None:
        """Build immutable entry ``start`` after its immutable children (no recursion)."""
        stack, active = [start], {start}
        while stack:
            i = stack[-1]
            if not 0 <= i < len(self.table):
                raise Unserializable(f"reference to a missing entry ({i})")
            pending = [c for c in self._children(self.table[i]) if c not in self.built]
            if pending:
                for c in pending:
                    if c in active:
                        raise Unserializable("an immutable value contains itself")
                    active.add(c)
                    stack.append(c)
                continue
            stack.pop()
            active.discard(i)
            self.built[i] = self._immutable(self.table[i])

    def _immutable(self, entry: list) -> object:
        tag = entry[0]
        if tag == "t":
            return tuple(self.value(x) for x in entry[1])
        if tag == "S":
            return frozenset(self.value(x) for x in entry[1])
        if tag == "y":
            return base64.b64decode(entry[1], validate=True)
        if tag == "i":
            if not isinstance(entry[1], str) or len(entry[1]) > 1_000_000:
                raise Unserializable("malformed big integer")
            return int(entry[1], 16)
        if tag == "f":
            if entry[1] not in _FLOAT_SPECIAL:
                raise Unserializable("malformed special float")
            return _FLOAT_SPECIAL[entry[1]]
        if tag == "c":
            re, im = self.value(entry[1]), self.value(entry[2])
            if type(re) is not float or type(im) is not float:
                raise Unserializable("malformed complex number")
            return complex(re, im)
        raise Unserializable(f"unknown entry tag {tag!r}")

    def _fill(self, target: object, entry: list) -> None:
        tag, v = entry[0], self.value
        if tag == "l":
            target[:] = [v(x) for x in entry[1]]  # type: ignore[index]
        elif tag == "d":
            items = [(v(k), v(x)) for k, x in entry[1]]
            target.clear()  # type: ignore[attr-defined]
            target.update(items)  # type: ignore[attr-defined]
        elif tag == "s":
            items = [v(x) for x in entry[1]]
            target.clear()  # type: ignore[attr-defined]
            target.update(items)  # type: ignore[attr-defined]
        elif tag == "Y":
            target[:] = base64.b64decode(entry[1], validate=True)  # type: ignore[index]
        else:  # "o"
            fields = [(str(name), v(x)) for name, x in entry[2]]
            d = getattr(target, "__dict__", None)
            if isinstance(d, dict):
                d.clear()
            for name, x in fields:
                object.__setattr__(target, name, x)


def encode(value: object, **kwargs: Any) -> dict:
    """One message for ``value`` (see :class:`Encoder` for the keywords)."""
    return Encoder(**kwargs).message(value)
