"""What runs inside the sandboxed process: the program, then (function tests) the test.

By the time :func:`run` is called the process is already confined (see ``init.py``): its
own pid namespace, an unprivileged uid, rlimits, a private /tmp. This module adds the
in-process part of the *proof of completion*:

1. References to every function the runner needs are captured before user code runs.
2. The program runs in a fresh ``__main__`` module. Any process it forked that returns into
   this code exits silently (only the original process speaks).
3. Before asking for the test: leftover processes are killed, leftover threads are refused,
   trace/profile hooks, gc callbacks, signal handlers and timers are reset, the builtins
   module, the preloaded standard modules and the import system are restored from snapshots,
   and new audit hooks were refused all along.
4. Only then does the runner report ``P`` and receive the test on a pipe; after the test ran
   to its end it reports ``T`` and only then receives the nonce, which it echoes with ``K``.

An adversarial program can still subvert the interpreter it shares with the test (ctypes
writes, finalizers that run during the test, inspecting the caller's frame, patching modules
that were not preloaded). docs/rewards.md lists these limits.
"""

from __future__ import annotations

import builtins
import gc
import io
import linecache
import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Sequence

from . import protocol as proto

REPORT_FD, TEST_FD = 3, 4
_PLAIN_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _is_plain(value: object, depth: int = 0) -> bool:
    """True for builtin data (numbers, strings, None, and lists/tuples/sets/dicts of them)."""
    t = type(value)
    if t in _PLAIN_TYPES:
        return True
    if depth > 100:
        return False
    if t in _CONTAINERS:
        return all(_is_plain(v, depth + 1) for v in value)  # type: ignore[attr-defined]
    if t is dict:
        return all(_is_plain(k, depth + 1) and _is_plain(v, depth + 1) for k, v in value.items())  # type: ignore[attr-defined]
    return False


def strict_returns(fn, name: str):
    """Wrap ``fn`` so that a return value that is not plain builtin data raises TypeError.

    Defeats the classic reward hack of returning an object whose ``__eq__`` is always True.
    """
    def guarded(*args, **kwargs):
        value = fn(*args, **kwargs)
        if not _is_plain(value):
            raise TypeError(f"strict_returns: {name} returned a {type(value).__name__}, not plain data "
                            "(numbers, strings, None, lists/tuples/sets/dicts of them)")
        return value
    return guarded


def _refuse_audit_hooks(event: str, args: tuple) -> None:
    if event == "sys.addaudithook":
        raise RuntimeError("the sandbox refuses new audit hooks")


def _fresh_stdio() -> None:
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                                 encoding="utf-8", errors="replace")
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                   encoding="utf-8", errors="backslashreplace")
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   encoding="utf-8", errors="backslashreplace",
                                                   line_buffering=True)


class _Runner:
    """Holds the references captured before user code runs."""

    def __init__(self, namespaces: bool, protected: Sequence[str]) -> None:
        self.namespaces = namespaces
        self.modules = {name: (sys.modules[name], dict(sys.modules[name].__dict__))
                        for name in ("builtins", *protected) if name in sys.modules}
        self.import_state = (list(sys.meta_path), list(sys.path_hooks), list(sys.path))
        self.write, self.read, self.exit, self.getpid = os.write, os.read, os._exit, os.getpid
        self.kill, self.listdir, self.waitpid = os.kill, os.listdir, os.waitpid
        self.compile, self.exec, self.eval = builtins.compile, builtins.exec, builtins.eval
        self.set_signal, self.setitimer = signal.signal, signal.setitimer
        self.settrace, self.setprofile = sys.settrace, sys.setprofile
        self.t_settrace, self.t_setprofile = threading.settrace, threading.setprofile
        self.builtins = builtins
        self.callbacks = gc.callbacks
        self.stdio = (sys.stdin, sys.stdout, sys.stderr)
        self.pid = os.getpid()
        self.format_exc = traceback.format_exception_only
        self.extract_tb = traceback.extract_tb
        self.print_exc = traceback.print_exception

    # -- reporting ---------------------------------------------------------------------------
    def send(self, tag: bytes, payload: bytes = b"") -> None:
        data = proto.report(tag, payload[:8000])
        while data:
            data = data[self.write(REPORT_FD, data):]

    def receive(self) -> bytes:
        head = self._read_exact(4)
        return self._read_exact(int.from_bytes(head, "big"))

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.read(TEST_FD, n - len(out))
            if not chunk:
                self.exit(70)
            out += chunk
        return out

    def finish(self, code: int = 0) -> None:
        for stream in self.stdio:
            try:
                stream.flush()
            except BaseException:
                pass
        self.exit(code)

    def describe(self, exc: BaseException, filename: str) -> bytes:
        """One line: the exception and the line of ``filename`` it came from."""
        try:
            where = ""
            for frame in reversed(self.extract_tb(exc.__traceback__)):
                if frame.filename == filename:
                    where = f" ({filename} line {frame.lineno}: {frame.line})" if frame.line else f" ({filename} line {frame.lineno})"
                    break
            text = "".join(self.format_exc(type(exc), exc)).strip()
            return (text[:1500] + where).encode("utf-8", "replace")
        except BaseException:
            return type(exc).__name__.encode()

    # -- phases ------------------------------------------------------------------------------
    def run_program(self, program: str, module: types.ModuleType, script: bool) -> bool:
        """Run the program; report E and return False if it did not run to its end.

        With ``script`` (stdin/stdout tests) a ``SystemExit`` ends the process with its code,
        as it would end a Python script.
        """
        try:
            code = self.compile(program, "<program>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            self.print_exc(e)
            self.send(proto.TAG_ERROR, b"syntax\n" + self.describe(e, "<program>"))
            return False
        try:
            self.exec(code, module.__dict__)
        except SystemExit as e:
            status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
            if self.getpid() != self.pid or script:
                self.finish(status)
            self.send(proto.TAG_ERROR, f"exit\nthe program raised SystemExit({e.code!r}) before the tests ran".encode())
            return False
        except BaseException as e:
            if self.getpid() != self.pid:
                self.finish(1)
            self.print_exc(e)
            kind = b"memory" if isinstance(e, MemoryError) else b"exception"
            self.send(proto.TAG_ERROR, kind + b"\n" + self.describe(e, "<program>"))
            return False
        if self.getpid() != self.pid:
            self.finish(0)  # a child the program forked came back through here
        return True

    def stop_leftovers(self) -> str | None:
        """Kill every other process of the job; refuse leftover threads. A reason, or None."""
        if self.namespaces:
            for _ in range(200):
                try:
                    self.kill(-1, signal.SIGKILL)  # our pid namespace: everything but init and us
                except ProcessLookupError:
                    pass
                alive = [p for p in self.listdir("/proc") if p.isdigit() and int(p) not in (1, self.pid)
                         and not _is_zombie(p)]
                if not alive:
                    break
            else:
                return "processes\nthe program's processes could not be stopped"
        else:
            _kill_descendants(self.pid)
        with open("/proc/self/status") as f:
            threads = next((line.split()[1] for line in f if line.startswith("Threads:")), "1")
        if threads != "1":
            return f"threads\nthe program left {int(threads) - 1} thread(s) running"
        return None

    def reset_interpreter(self, module: types.ModuleType) -> None:
        """Undo the global hooks a program can install; restore builtins, preloaded modules, imports, stdio."""
        self.settrace(None)
        self.setprofile(None)
        self.t_settrace(None)  # type: ignore[arg-type]
        self.t_setprofile(None)  # type: ignore[arg-type]
        self.callbacks.clear()
        for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
            self.setitimer(timer, 0)
        for sig in range(1, signal.NSIG):
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            handler = signal.SIG_IGN if sig in (signal.SIGPIPE, signal.SIGXFSZ) else signal.SIG_DFL
            if sig == signal.SIGINT:
                handler = signal.default_int_handler
            try:
                self.set_signal(sig, handler)
            except (OSError, ValueError):
                pass
        for name, (original, namespace) in self.modules.items():  # builtins and the preloaded modules
            sys.modules[name] = original
            original.__dict__.clear()
            original.__dict__.update(namespace)
        sys.meta_path[:], sys.path_hooks[:], sys.path[:] = (list(x) for x in self.import_state)
        sys.path_importer_cache.clear()
        module.__dict__["__builtins__"] = self.builtins
        sys.stdin, sys.stdout, sys.stderr = self.stdio

    def run_test(self, module: types.ModuleType, test: str, entry_point: str | None, strict: bool) -> None:
        """Run the test in the program's namespace; report F, or T then K with the nonce."""
        g = module.__dict__
        try:
            self.exec(self.compile(test, "<test>", "exec", dont_inherit=True), g)
            if entry_point:
                if not callable(g.get("check")):
                    raise NameError("the test defines no check(candidate) function")
                candidate = self.eval(entry_point, g)
                g["check"](strict_returns(candidate, entry_point) if strict else candidate)
        except BaseException as e:
            if self.getpid() != self.pid:
                self.finish(1)
            self.print_exc(e)
            if isinstance(e, MemoryError):
                self.send(proto.TAG_ERROR, b"memory\n" + self.describe(e, "<test>"))
            else:
                self.send(proto.TAG_FAILED, self.describe(e, "<test>"))
            self.finish(0)
        if self.getpid() != self.pid:
            self.finish(0)
        self.send(proto.TAG_TEST_DONE)
        self.send(proto.TAG_PROOF, self.receive())
        self.finish(0)


def _is_zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True  # gone


def _kill_descendants(pid: int) -> None:
    """SIGKILL every descendant of ``pid`` (children first listed, then killed)."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
        if p != pid:
            seen.append(p)
    for p in seen:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def run(program: str, mode: str, namespaces: bool, protected: Sequence[str] = ()) -> None:
    """Run ``program`` (mode ``function``: then the test from the test pipe). Never returns.

    ``protected``: modules whose namespaces are restored before the test (the preloaded ones).
    """
    _fresh_stdio()  # (the random module reseeds itself in every forked child)
    sys.argv = ["main.py"]
    sys.addaudithook(_refuse_audit_hooks)
    module = types.ModuleType("__main__")
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = module
    linecache.cache["<program>"] = (len(program), None, program.splitlines(True), "<program>")
    runner = _Runner(namespaces, protected)
    if not runner.run_program(program, module, script=mode == "stdio"):
        runner.finish(1)
    if mode == "stdio":
        runner.finish(0)
    runner.reset_interpreter(module)  # first: the checks below use builtins the program may have patched
    problem = runner.stop_leftovers()
    if problem:
        runner.send(proto.TAG_ERROR, problem.encode())
        runner.finish(0)
    runner.send(proto.TAG_PROGRAM_DONE)
    message = runner.receive()
    strict, n = message[0] == 1, int.from_bytes(message[1:3], "big")
    entry_point = message[3:3 + n].decode() or None
    test = message[3 + n:].decode()
    linecache.cache["<test>"] = (len(test), None, test.splitlines(True), "<test>")
    runner.run_test(module, test, entry_point, strict)
