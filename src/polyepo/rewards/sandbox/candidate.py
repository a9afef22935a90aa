"""The candidate process: runs the program, then answers the test process's calls.

This process is the program's: it runs it in a fresh ``__main__`` and everything in it may
be rewritten by the program (builtins, modules, this very module). It holds nothing worth
stealing (no test, no expected value, no report channel) and it can only answer the test
process through the channel (fd 3), with plain data (:mod:`.channel`): whatever it does to
its own interpreter cannot change how the test process compares the values it receives.

Protocol on the channel: after the program ran, ``{"ready": [names]}`` (its top-level
callables) or ``{"error": [kind, detail]}``; then, per request ``{"op": "call", "target":
..., "args": message}`` or ``{"op": "getattr", ...}``, one reply: ``{"ok": message}``,
``{"callable": true}``, ``{"raise": [exception type, text]}`` or ``{"unserializable": why}``.

In stdin/stdout mode there is no test process: the program runs as a script and its
output is judged by the supervisor, outside this process.
"""

from __future__ import annotations

import builtins
import io
import linecache
import os
import socket
import sys
import traceback
import types

from . import channel

CHANNEL_FD = 3


def _fresh_stdio() -> None:
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                 encoding="utf-8", errors="replace")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                   encoding="utf-8", errors="backslashreplace")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   encoding="utf-8", errors="backslashreplace",
                                                   line_buffering=True)


def flush_stdio() -> None:
    """Flush stdout and stderr, whatever the program did to them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def describe(exc: BaseException, filename: str) -> str:
    """One line: the exception and the line of ``filename`` it came from."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            where = f" ({filename} line {frame.lineno}: {frame.line})" if frame.line else f" ({filename} line {frame.lineno})"
            break
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:1500] + where


class _Candidate:
    """The program's module, its handles, and the channel to the test process."""

    def __init__(self, module: types.ModuleType, sock: socket.socket | None) -> None:
        self.module, self.sock = module, sock
        self.pid = os.getpid()
        self.exit = os._exit
        self.handles: dict[int, object] = {}
        self.handle_ids: dict[int, int] = {}  # id(object) -> handle

    def finish(self, code: int = 0) -> None:
        flush_stdio()
        self.exit(code)

    def tell(self, message: dict) -> None:
        if self.sock is None:
            return
        flush_stdio()  # what the program printed lands before the reply
        try:
            channel.send(self.sock, message)
        except BaseException:
            self.finish(1)

    # -- the program ---------------------------------------------------------------------------
    def run_program(self, program: str, script: bool) -> None:
        """Run the program; on failure tell the test process why and exit."""
        try:
            code = compile(program, "<program>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            traceback.print_exception(e)
            self.tell({"error": ["syntax", describe(e, "<program>")]})
            self.finish(1)
        try:
            exec(code, self.module.__dict__)
        except SystemExit as e:
            status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            if os.getpid() != self.pid or script:
                self.finish(status)
            self.tell({"error": ["exit", f"the program raised SystemExit({e.code!r}) before the tests ran"]})
            self.finish(status)
        except BaseException as e:
            if os.getpid() != self.pid:
                self.finish(1)
            traceback.print_exception(e)
            kind = "memory" if isinstance(e, MemoryError) else "exception"
            self.tell({"error": [kind, describe(e, "<program>")]})
            self.finish(1)
        if os.getpid() != self.pid:
            self.finish(0)  # a child the program forked came back through here

    def callables(self) -> list[str]:
        return [name for name, value in list(self.module.__dict__.items())
                if isinstance(name, str) and not name.startswith("__") and callable(value)]

    # -- serving calls -------------------------------------------------------------------------
    def serve(self) -> None:
        self.tell({"ready": self.callables()})
        while True:
            try:
                request = channel.receive(self.sock)  # type: ignore[arg-type]
            except BaseException:
                self.finish(0)  # the test process is done (or gone)
            if os.getpid() != self.pid:
                self.finish(0)
            self.tell(self.answer(request))

    def answer(self, request: dict) -> dict:
        try:
            if request.get("op") == "getattr":
                value = getattr(self.handles[request["handle"]], request["name"])
                if callable(value):
                    return {"callable": True}
                return {"ok": self.encode(value, {})}
            target = self.resolve(request["target"])
            decoder = channel.Decoder(self.make_object, self.handles.__getitem__)
            args, kwargs = decoder.message(request["args"])  # type: ignore[misc]
            result = target(*args, **kwargs)
            if isinstance(target, type):
                self.register(result)
            originals = {id(obj): i for i, obj in decoder.received.items()}
            return {"ok": self.encode([result, args, kwargs], originals)}
        except SystemExit as e:
            self.finish(0 if e.code is None else e.code if isinstance(e.code, int) else 1)
        except channel.Unserializable as e:
            return {"unserializable": str(e)[:1000]}
        except BaseException as e:
            if os.getpid() != self.pid:
                self.finish(1)
            try:
                return {"raise": [type(e).__name__, str(e)[:1000]]}
            except BaseException:
                return {"raise": ["Exception", "an exception whose text could not be read"]}
        return {}

    def resolve(self, target: dict) -> object:
        if "handle" in target:
            return getattr(self.handles[target["handle"]], target["name"])
        return self.module.__dict__[target["name"]]

    def register(self, obj: object) -> None:
        if id(obj) not in self.handle_ids:
            handle = len(self.handles) + 1
            self.handles[handle] = obj
            self.handle_ids[id(obj)] = handle

    def encode(self, value: object, originals: dict[int, int]) -> dict:
        def objects(obj: object) -> tuple[str, object]:
            handle = self.handle_ids.get(id(obj))
            return ("h", handle) if handle is not None else ("o", type(obj).__name__)
        return channel.encode(value, objects=objects, originals=originals)

    def make_object(self, name: str) -> object:
        cls = self.module.__dict__.get(name)
        if not isinstance(cls, type):
            cls = type(name, (), {})
        return cls.__new__(cls)


def run(program: str, mode: str) -> None:
    """Run ``program``; in function mode, then serve the test process. Never returns."""
    _fresh_stdio()
    sys.argv = ["main.py"]
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    linecache.cache["<program>"] = (len(program), None, program.splitlines(True), "<program>")
    sock = socket.socket(fileno=CHANNEL_FD) if mode == "function" else None
    candidate = _Candidate(module, sock)
    candidate.run_program(program, script=mode == "stdio")
    if sock is None:
        candidate.finish(0)
    candidate.serve()
