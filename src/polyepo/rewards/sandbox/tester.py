"""The test process: a pristine interpreter that runs the test and calls the program remotely.

Forked from the sandbox's init before any program code ran, it never executes a line of the
program. It runs under its own uid where the isolation level allows (else the program's uid),
non-dumpable (no ptrace, no /proc/<pid>/mem, no /proc/<pid>/fd for the program), with the
same seccomp filter and rlimits as the program. Its namespace is built from trusted code only:

1. the task's helper code (e.g. HumanEval's prompt with ``encode_cyclic``, LeetCode's
   ``ListNode``), its largest prefix that compiles (a starter's unfinished ``def`` is cut);
2. a proxy for each top-level callable the program defined, except builtins' names and names
   the helper code defines with a real body (stubs such as a prompt's signature + docstring
   are replaced); the entry point's name is always the program's;
3. the test code, then ``check(<entry point>)``.

Every call of a proxy crosses the channel (:mod:`.channel`) as plain data, both ways;
exceptions raised by the program come back as builtin exception types (others as
:class:`ProgramError`). If a value that is not plain data comes back, or the program's process
breaks the protocol or ends during a call, the run fails with that reason even when the test
caught the exception. Reports go to the supervisor on fd 3 (P, then T, then K with the nonce);
the test arrives on fd 4; the channel is fd 5.
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import os
import socket
import sys
import traceback
import types

from . import channel
from . import protocol as proto
from .candidate import describe, flush_stdio

REPORT_FD, TEST_FD, CHANNEL_FD = 3, 4, 5
NAMESPACE = "__main__"  # the test runs as a script does (``if __name__ == "__main__":`` blocks run)
_NOT_RAISED = {"SystemExit", "KeyboardInterrupt", "GeneratorExit"}
_REPLY_KEYS = {"call": {"ok", "raise", "unserializable"}, "getattr": {"ok", "callable", "raise", "unserializable"}}


class ProgramError(Exception):
    """An exception the program raised whose type is not a builtin one (its name is in the text)."""


class _Violation(BaseException):
    """The program broke the rules during a call; the run fails with ``kind`` whatever the test does."""


def _read_exact(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            os._exit(70)
        out += chunk
    return out


def send_report(tag: bytes, payload: bytes = b"") -> None:
    proto.write_all(REPORT_FD, proto.report(tag, payload[:8000]))


def receive_frame() -> bytes:
    return _read_exact(TEST_FD, int.from_bytes(_read_exact(TEST_FD, 4), "big"))


def finish(code: int = 0) -> None:
    flush_stdio()
    os._exit(code)


# -- helper code -----------------------------------------------------------------------------------

def compiling_prefix(code: str) -> str:
    """The longest prefix of whole lines of ``code`` that compiles (trusted task code)."""
    lines = code.splitlines(True)
    for end in range(len(lines), -1, -1):
        text = "".join(lines[:end])
        try:
            compile(text, "<helpers>", "exec", dont_inherit=True)
            return text
        except (SyntaxError, ValueError):
            continue
    return ""


def _is_stub(node: ast.AST) -> bool:
    """A def whose body is only a docstring, ``pass`` or ``...``; a class with such a method."""
    if isinstance(node, ast.ClassDef):
        return any(_is_stub(n) for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))) or all(
            isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in node.body)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return all(isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
                   for n in node.body)
    return False


def defined_names(code: str) -> set[str]:
    """Top-level names that ``code`` binds with a real definition (stubs excluded)."""
    names: set[str] = set()
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not _is_stub(node):
                names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def entry_name(entry_point: str | None) -> str | None:
    """The name an entry point expression starts from (``Solution`` in ``Solution().twoSum``)."""
    if not entry_point:
        return None
    try:
        node = ast.parse(entry_point, mode="eval").body
    except SyntaxError:
        return None
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return None
    return node.id


# -- the session with the candidate process -----------------------------------------------------------

class Session:
    """Calls into the candidate process; remembers the first rule the program broke."""

    def __init__(self, sock: socket.socket, namespace: dict) -> None:
        self.sock, self.ns = sock, namespace
        self.violation: tuple[str, str] | None = None
        self.remote: dict[int, RemoteObject] = {}

    def fail(self, kind: str, detail: str) -> _Violation:
        self.violation = self.violation or (kind, detail)
        return _Violation(kind, detail)

    def request(self, message: dict) -> dict:
        if self.violation:
            raise _Violation(*self.violation)
        try:
            channel.send(self.sock, message)
            reply = channel.receive(self.sock)
        except channel.ChannelClosed:
            raise self.fail("gone", "the program's process ended during a call") from None
        except channel.Unserializable as e:
            raise self.fail("protocol", f"the program broke the channel protocol ({e})") from None
        except OSError as e:
            raise self.fail("gone", f"the channel to the program failed ({e})") from None
        if not isinstance(reply, dict) or len(reply.keys() & _REPLY_KEYS[message["op"]]) != 1:
            raise self.fail("protocol", "the program broke the channel protocol (not a reply to the call)")
        if "unserializable" in reply:
            raise self.fail("unserializable", str(reply["unserializable"])[:500])
        if "raise" in reply:
            raise _exception(reply["raise"])
        return reply

    def call(self, target: dict, args: tuple, kwargs: dict) -> object:
        encoder = channel.Encoder(objects=self._object)
        try:
            message = encoder.message([list(args), dict(kwargs)])
        except channel.Unserializable as e:
            raise TypeError(f"the test passed a value the sandbox's channel cannot carry: {e}") from None
        sent = {encoder.index[id(obj)]: obj for obj in encoder.keep}
        reply = self.request({"op": "call", "target": target, "args": message})
        value = self._decode(reply.get("ok"), sent)
        if not (isinstance(value, list) and len(value) == 3):
            raise self.fail("protocol", "the program broke the channel protocol (a malformed reply)")
        return value[0]

    def getattr(self, handle: int, name: str) -> object:
        reply = self.request({"op": "getattr", "handle": handle, "name": name})
        if reply.get("callable") is True:
            return RemoteMethod(self, handle, name)
        return self._decode(reply.get("ok"), {})

    def _decode(self, message: object, sent: dict) -> object:
        try:
            return channel.Decoder(self._make, self._handle, sent).message(message)
        except channel.Unserializable as e:
            raise self.fail("unserializable", f"the program returned a value that is not plain data: {e}") from None

    def _object(self, obj: object) -> tuple[str, object] | None:
        if isinstance(obj, RemoteObject):
            return ("h", object.__getattribute__(obj, "_handle"))
        if getattr(type(obj), "__module__", None) == NAMESPACE:
            return ("o", type(obj).__name__)
        return None

    def _make(self, name: str) -> object:
        cls = self.ns.get(name)
        if not (isinstance(cls, type) and cls.__module__ == NAMESPACE):
            raise channel.Unserializable(f"a {name} is not plain data (and not a class the test defines)")
        try:
            return cls.__new__(cls)
        except Exception as e:
            raise channel.Unserializable(f"cannot rebuild a {name}: {e}") from None

    def _handle(self, handle: object) -> RemoteObject:
        if type(handle) is not int:
            raise channel.Unserializable("malformed handle")
        if handle not in self.remote:
            self.remote[handle] = RemoteObject(self, handle)
        return self.remote[handle]


def _exception(raised: object) -> BaseException:
    name, text = (raised + ["", ""])[:2] if isinstance(raised, list) else ("Exception", "")
    cls = getattr(builtins, str(name), None)
    if isinstance(cls, type) and issubclass(cls, BaseException) and str(name) not in _NOT_RAISED:
        try:
            return cls(str(text))
        except Exception:
            pass
    return ProgramError(f"{name}: {text}")


class Proxy:
    """A top-level callable of the program, called in the candidate process."""

    def __init__(self, session: Session, name: str) -> None:
        self._session, self._name = session, name
        self.__name__ = self.__qualname__ = name

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._session.call({"name": self._name}, args, kwargs)

    def __repr__(self) -> str:
        return f"<program callable {self._name}>"


class RemoteMethod(Proxy):
    """A method of an object that lives in the candidate process."""

    def __init__(self, session: Session, handle: int, name: str) -> None:
        super().__init__(session, name)
        self._handle = handle

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self._session.call({"handle": self._handle, "name": self._name}, args, kwargs)


class RemoteObject:
    """An object of the program's (made by calling one of its classes); attributes are fetched."""

    __slots__ = ("_session", "_handle")

    def __init__(self, session: Session, handle: int) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_handle", handle)

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return object.__getattribute__(self, "_session").getattr(object.__getattribute__(self, "_handle"), name)

    def __repr__(self) -> str:
        return f"<program object #{object.__getattribute__(self, '_handle')}>"


# -- the run ---------------------------------------------------------------------------------------

class _Prepared:
    """What the test process does before the program is ready (it runs meanwhile): the
    namespace, the helper code executed in it, the test compiled."""

    def __init__(self, spec: dict) -> None:
        module = types.ModuleType(NAMESPACE)
        module.__dict__["__builtins__"] = builtins
        sys.modules[NAMESPACE] = module
        self.ns = module.__dict__
        self.helpers = compiling_prefix(spec.get("helpers") or "")
        self.keep = defined_names(self.helpers) | set(dir(builtins))
        self.entry = entry_name(spec.get("entry_point"))
        self.error: BaseException | None = None
        for name, text in (("<helpers>", self.helpers), ("<test>", spec["test"])):
            linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        try:
            exec(compile(self.helpers, "<helpers>", "exec", dont_inherit=True), self.ns)
            self.test = compile(spec["test"], "<test>", "exec", dont_inherit=True)
        except BaseException as e:  # reported as the test's failure once the program is ready
            self.error = e

    def proxied(self, names: list) -> list[str]:
        """The program's callables the test sees: not builtins, not the helpers' real
        definitions; the entry point's name always."""
        return [n for n in names if isinstance(n, str) and (n == self.entry or n not in self.keep)]


def _greeting(sock: socket.socket) -> list:
    """Wait for the program's process; its callables, or report why it failed and exit."""
    try:
        hello = channel.receive(sock)
    except channel.ChannelClosed:
        send_report(proto.TAG_ERROR, b"exit\nthe program's process ended before the tests ran")
        finish(0)
    except channel.Unserializable as e:
        send_report(proto.TAG_ERROR, f"protocol\nthe program wrote to the test channel ({e})".encode())
        finish(0)
    if isinstance(hello, dict) and isinstance(hello.get("error"), list) and len(hello["error"]) == 2:
        kind, detail = (str(x) for x in hello["error"])
        kind = kind if kind in ("syntax", "exception", "memory", "exit") else "exception"
        send_report(proto.TAG_ERROR, f"{kind}\n{detail}".encode("utf-8", "replace"))
        finish(0)
    if not (isinstance(hello, dict) and isinstance(hello.get("ready"), list)):
        send_report(proto.TAG_ERROR, b"protocol\nthe program wrote to the test channel (not the expected greeting)")
        finish(0)
    return hello["ready"]


def run() -> None:
    """Receive the test, prepare it, wait for the program, run the test against it, report.
    Never returns."""
    sys.argv = ["test.py"]
    spec = json.loads(receive_frame())
    sock = socket.socket(fileno=CHANNEL_FD)
    prepared = _Prepared(spec)  # while the program's process runs the program
    names = _greeting(sock)
    send_report(proto.TAG_PROGRAM_DONE)
    ns = prepared.ns
    session = Session(sock, ns)
    try:
        if prepared.error is not None:
            raise prepared.error
        for name in prepared.proxied(names):
            ns[name] = Proxy(session, name)
        exec(prepared.test, ns)
        if spec.get("entry_point"):
            if not callable(ns.get("check")):
                raise NameError("the test defines no check(candidate) function")
            ns["check"](eval(spec["entry_point"], ns))
    except BaseException as e:
        _report_failure(session, e)
        finish(0)
    if session.violation:
        _report_violation(session.violation)
        finish(0)
    send_report(proto.TAG_TEST_DONE)
    send_report(proto.TAG_PROOF, receive_frame())
    finish(0)


def _report_violation(violation: tuple[str, str]) -> None:
    send_report(proto.TAG_ERROR, f"{violation[0]}\n{violation[1]}".encode("utf-8", "replace"))


def _report_failure(session: Session, e: BaseException) -> None:
    if session.violation:
        return _report_violation(session.violation)
    traceback.print_exception(e)
    if isinstance(e, MemoryError):
        send_report(proto.TAG_ERROR, b"memory\n" + describe(e, "<test>").encode("utf-8", "replace"))
    else:
        send_report(proto.TAG_FAILED, describe(e, "<test>").encode("utf-8", "replace"))
