"""Host side: a pool of sandbox servers, parallel batches, retries and loud degradation.

Each worker is one long-lived sandbox server process (``server.py``); a job borrows an idle
server, sends two frames and reads one result frame, all with deadlines. A server that
breaks (dies, hangs, answers garbage) or a job that ends in ``sandbox_error`` is retried
once on a fresh server; a second failure is returned as ``sandbox_error``, logged, and
counted in :attr:`SandboxPool.counters`. It is never turned into a failed test.
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from . import protocol as proto
from .jobs import Job, Limits, SandboxResult

log = logging.getLogger("polyepo.rewards.sandbox")

LEVELS = ("full", "userns", "rlimits")
#: The server's start: the packages above the sandbox's modules are registered empty (their
#: ``__init__`` would import the rewards, clustering, numpy ...: memory that every fork of the
#: server copies), then the server's own modules are imported.
_PACKAGES = ("import sys, types; s = sys.argv[2]\n"
             "for name in ('polyepo', 'polyepo.rewards', 'polyepo.rewards.sandbox'):\n"
             "    m = sys.modules[name] = types.ModuleType(name); m.__path__ = [s + '/' + name.replace('.', '/')]\n")
_BOOT = _PACKAGES + "from polyepo.rewards.sandbox.server import main; main()"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # .../polyepo
_SRC = os.path.dirname(_PACKAGE)
#: Standard modules imported once by each server, so that runs do not pay for them.
DEFAULT_PRELOAD = ("math", "re", "json", "collections", "itertools", "functools", "heapq", "bisect", "string",
                   "random", "typing", "operator", "copy", "fractions", "decimal", "statistics", "hashlib",
                   "datetime", "array", "dataclasses", "enum", "cmath", "numbers", "textwrap", "unicodedata",
                   "queue", "threading", "contextlib", "io", "struct")
_WARNED: set[str] = set()
_UIDS = itertools.count()  # runs of different servers never share a uid (RLIMIT_NPROC is per uid)
STAGING_PREFIX = "polyepo-sandbox-root-"
_STALE_DONE: set[int] = set()
_MISSING_MEANS = {
    "cgroup": "a per-job total of memory (shared memory, memfd, tmpfs) / processes / a fair CPU share",
    "cgroups": "per-job totals of memory and processes and a fair CPU share between concurrent jobs",
    "seccomp": "blocking user namespaces, kernel keyrings, ptrace and other rarely needed system calls",
}
_NOT_COVERED = {
    "userns": "programs run under your own uid (mapped to root inside, with no capabilities), so the "
              "process-count limit is shared with your other processes in that namespace",
    "rlimits": "NO network isolation, NO filesystem isolation (the program can read and write what "
               "its uid can), host processes visible; only rlimits, a session and a child subreaper",
}


class SandboxBroken(RuntimeError):
    """A sandbox server failed (not the program): died, hung or broke the protocol."""


@dataclass(frozen=True)
class SandboxConfig:
    """Settings fixed when a sandbox server starts; pools are shared per config."""

    isolation: str = "auto"
    """auto (best available: full, then userns, then rlimits), full, userns or rlimits."""
    readable_paths: tuple[str, ...] = ()
    """Extra host paths programs may read (read-only), beyond the system and Python ones."""
    hidden_paths: tuple[str, ...] = ()
    """Paths made empty inside the sandbox, e.g. a dataset's files inside site-packages."""
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    """Modules each server imports once, before any job (runs inherit them)."""
    python: str = sys.executable
    """The interpreter that runs the servers (and so the programs)."""
    cgroups: bool = True
    """Per-job cgroups (memory, pids, cpu) where the machine allows; False only to test without."""
    seccomp: bool = True
    """The seccomp filter of ``seccomp.py`` where libseccomp exists; False only to test without."""

    def __post_init__(self) -> None:
        if self.isolation not in ("auto", *LEVELS):
            raise ValueError(f"isolation must be one of auto, {', '.join(LEVELS)}; got {self.isolation!r}")
        object.__setattr__(self, "readable_paths", tuple(os.path.abspath(p) for p in self.readable_paths))
        object.__setattr__(self, "hidden_paths", tuple(os.path.abspath(p) for p in self.hidden_paths))


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class _Server:
    """One sandbox server process and its control pipes."""

    def __init__(self, config: SandboxConfig, level: str, uid: int) -> None:
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-") if level != "rlimits" else ""
        cfg = {"isolation": level, "uid": uid, "test_uid": uid + 1, "staging": staging,
               "preload": list(config.preload), "readable_paths": list(config.readable_paths),
               "hidden_paths": [*config.hidden_paths, _PACKAGE],  # the server imported what it needs
               "cgroups": config.cgroups, "seccomp": config.seccomp}
        self.level, self.uids = level, (uid, uid + 1)
        self.degraded: dict[str, str] = {}
        self.errlog = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [config.python, "-I", "-c", _BOOT, json.dumps(cfg), _SRC], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.errlog, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/", close_fds=True)
            self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()  # type: ignore[union-attr]
            os.set_blocking(self.fd_in, False)
            ready = self._read(time.monotonic() + 60)
        except BaseException:
            self.close()
            raise
        finally:
            if staging:
                os.rmdir(staging)  # only a mount point inside the server's own namespace
        if not isinstance(ready, dict) or not ready.get("ready"):
            self.close()
            raise SandboxBroken(ready.get("error", ready) if isinstance(ready, dict) else repr(ready))
        self.degraded = dict(ready.get("degraded") or {})

    def run(self, first: dict, second: dict, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        self._write(proto.frame(json.dumps(first).encode()) + proto.frame(json.dumps(second).encode()), deadline)
        result = self._read(deadline)
        if not isinstance(result, dict) or "status" not in result:
            raise SandboxBroken(f"bad result frame: {result!r}")
        return result

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            if not select.select([], [self.fd_in], [], max(0.0, deadline - time.monotonic()))[1]:
                raise SandboxBroken(self._why("timed out sending a job"))
            try:
                view = view[os.write(self.fd_in, view):]
            except BrokenPipeError:
                raise SandboxBroken(self._why("the server closed its input")) from None

    def _read(self, deadline: float) -> object:
        buf = bytearray()
        need = 4
        while len(buf) < need:
            if not select.select([self.fd_out], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise SandboxBroken(self._why("timed out waiting for the server"))
            chunk = os.read(self.fd_out, 1 << 20)
            if not chunk:
                raise SandboxBroken(self._why("the server exited"))
            buf += chunk
            if len(buf) >= 4:
                need = 4 + int.from_bytes(buf[:4], "big")
        return json.loads(bytes(buf[4:need]))

    def _why(self, what: str) -> str:
        tail = self.log_tail()
        return f"{what} (exit code {self.proc.poll()}){': ' + tail if tail else ''}"

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's stderr (tracebacks of its own failures)."""
        self.errlog.seek(0, os.SEEK_END)
        size = self.errlog.tell()
        self.errlog.seek(max(0, size - chars))
        return self.errlog.read().decode("utf-8", "replace").strip()

    def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc is not None:
            from .cgroups import remove_stale

            try:
                remove_stale(only_pid=proc.pid)  # the server's cgroups, now that it is gone
            except OSError as e:
                log.debug("polyepo sandbox: cgroup clean-up failed: %s", e)
        for stream in (getattr(proc, "stdin", None), getattr(proc, "stdout", None), self.errlog):
            try:
                stream.close()  # type: ignore[union-attr]
            except (OSError, AttributeError):
                pass


class SandboxPool:
    """Up to ``workers`` sandbox servers, started on demand, shared by threads."""

    def __init__(self, config: SandboxConfig | None = None, workers: int | None = None) -> None:
        self.config = config or SandboxConfig()
        self.workers = max(1, workers or len(os.sched_getaffinity(0)))
        self.counters = {"jobs": 0, "sandbox_errors": 0, "retries": 0, "server_starts": 0}
        self._idle: queue.LifoQueue[_Server] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._level: str | None = None
        self._closed = False
        self._servers: set[_Server] = set()
        self._all: list[_Server] = []
        self._degraded: dict[str, str] = {}

    @property
    def isolation(self) -> str:
        """The isolation level the servers run at (starts one server to find out)."""
        if self._level is None:
            self._release(self._acquire())
        return self._level  # type: ignore[return-value]

    def server_pids(self) -> list[int]:
        """Process ids of the running sandbox servers (for monitoring and tests)."""
        return [s.proc.pid for s in list(self._servers) if s.proc.poll() is None]

    def uids(self) -> set[int]:
        """Every uid this pool's servers run programs and tests under (for monitoring and tests)."""
        return {u for s in list(self._all) for u in s.uids}

    @property
    def degraded(self) -> dict[str, str]:
        """Kernel mechanisms the servers could not set up, with why (starts one server)."""
        self.isolation  # noqa: B018
        return dict(self._degraded)

    def warm(self) -> float:
        """Start every server now (they otherwise start on first use); the seconds it took."""
        start = time.perf_counter()
        servers = [self._acquire() for _ in range(self.workers)]
        for server in servers:
            self._release(server)
        return time.perf_counter() - start

    def _start(self) -> _Server:
        # two uids per server (program, test), from a range unused by anyone else
        uid = 1_000_000_000 + ((os.getpid() % 1_000_000) * 1000 + next(_UIDS) % 1000) * 2
        self._count("server_starts")
        _remove_stale_once()
        if self._level is not None:
            server = _Server(self.config, self._level, uid)
            self._add(server)
            return server
        wanted = self.config.isolation
        candidates = [wanted] if wanted != "auto" else (LEVELS if os.geteuid() == 0 else LEVELS[1:])
        reasons = ["full: needs root"] if wanted == "auto" and os.geteuid() != 0 else []
        for level in candidates:
            try:
                server = _Server(self.config, level, uid)
            except (SandboxBroken, OSError) as e:
                reasons.append(f"{level}: {e}")
                continue
            self._level = level
            self._add(server)
            if level != "full":
                _warn_once(f"polyepo sandbox: isolation level {level!r}, not 'full' "
                           f"({'; '.join(reasons) or 'as configured'}). Not covered: {_NOT_COVERED[level]}.")
            return server
        raise SandboxBroken("no sandbox isolation level could start: " + "; ".join(reasons))

    def _add(self, server: _Server) -> None:
        self._servers.add(server)
        self._all.append(server)
        if server.degraded and server.degraded != self._degraded:
            self._degraded = dict(server.degraded)
            _warn_once("polyepo sandbox: kernel mechanisms missing at isolation level "
                       f"{server.level!r}: " + self.degraded_text
                       + ". Not covered without them: " + ", ".join(
                           _MISSING_MEANS.get(k.split()[0], k) for k in sorted(server.degraded)) + ".")

    def _acquire(self) -> _Server:
        """An idle server, a new one while fewer than ``workers`` run, else wait for one."""
        while True:
            if self._closed:
                raise RuntimeError("this SandboxPool is closed")
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                grow = self._started < self.workers
                self._started += grow
            if grow:
                try:
                    return self._start()
                except BaseException:
                    with self._lock:
                        self._started -= 1
                    raise
            try:  # wait, but look again soon: a broken server frees a slot without an idle server
                return self._idle.get(timeout=0.05)
            except queue.Empty:
                continue

    def _release(self, server: _Server | None) -> None:
        if server is not None and not self._closed:
            self._idle.put(server)
            return
        with self._lock:
            self._started -= 1
        if server is not None:
            server.close()
        self._servers = {s for s in self._servers if s.proc.poll() is None}

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] += 1

    def _attempt(self, first: dict, second: dict, seconds: float) -> tuple[dict | None, str]:
        """One try on one server: (result, "") or (None, why the sandbox failed)."""
        try:
            server = self._acquire()
        except (SandboxBroken, OSError) as e:
            if self._level is None:
                raise  # no server ever started: a setup problem, not a transient failure
            return None, f"could not start a server: {e}"
        try:
            data = server.run(first, second, seconds)
        except (SandboxBroken, OSError, ValueError) as e:
            server.close()
            self._release(None)
            return None, str(e)
        tail = server.log_tail(1000) if data["status"] == "sandbox_error" else ""
        self._release(server)
        if data["status"] == "sandbox_error":
            return None, data.get("detail", "sandbox_error") + (f"; server log: {tail}" if tail else "")
        return data, ""

    def run(self, job: Job, limits: Limits | None = None) -> SandboxResult:
        """Run one job; a sandbox failure is retried once, then returned as ``sandbox_error``."""
        limits = limits or Limits()
        first, second = job.messages(limits)
        runs = 1 if job.cases is None else len(job.cases)
        seconds = runs * (limits.timeout_s + 10.0) + 60.0
        self._count("jobs")
        for attempt in range(2):
            data, why = self._attempt(first, second, seconds)
            if data is not None:
                return SandboxResult.from_wire(data, self._level or "", attempt, self.degraded_text)
            if attempt == 0:
                self._count("retries")
                log.warning("polyepo sandbox: sandbox failure, retrying once: %s", why)
        self._count("sandbox_errors")
        log.error("polyepo sandbox: sandbox failure after a retry: %s", why)
        return SandboxResult(status="sandbox_error", detail=why, isolation=self._level or "", retries=1)

    @property
    def degraded_text(self) -> str:
        """:attr:`degraded` as one line ("" when nothing is missing)."""
        return "; ".join(f"{k}: {v}" for k, v in sorted(self._degraded.items()))

    def run_many(self, jobs: Sequence[Job], limits: Limits | None = None, *,
                 progress: bool = False) -> list[SandboxResult]:
        """Run ``jobs`` in parallel on up to ``workers`` servers; results in input order."""
        results: list[SandboxResult | None] = [None] * len(jobs)
        if not jobs:
            return []
        bar = _progress(progress, len(jobs))
        try:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
                futures = {pool.submit(self.run, job, limits): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.advance(results[futures[fut]].status)
        finally:
            bar.stop()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop every idle server (busy ones stop when their job returns)."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_stale_once() -> None:
    """Once per process: remove what killed sandbox servers left (cgroups, work and root dirs)."""
    if os.getpid() in _STALE_DONE:
        return
    _STALE_DONE.add(os.getpid())
    from .cgroups import _start_time, remove_stale

    try:
        remove_stale()
    except OSError as e:
        log.debug("polyepo sandbox: stale cgroup clean-up failed: %s", e)
    for tmp in {tempfile.gettempdir(), "/tmp"}:
        try:
            names = os.listdir(tmp)
        except OSError:
            continue
        for name in names:
            for prefix in (proto.WORKDIR_PREFIX, STAGING_PREFIX):
                pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
                if pid.isdigit() and _start_time(int(pid)) is None:
                    shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


class _progress:
    """The progress display of a batch (:mod:`polyepo.progress`: a bar on a terminal, plain lines
    elsewhere), or nothing; the runs so far and how they ended."""

    def __init__(self, enabled: bool, total: int) -> None:
        from ...progress import open_display

        self.display = open_display(enabled)
        self.statuses: dict[str, int] = {}
        self.task = self.display.add_task("sandbox runs", total=total)

    def advance(self, status: str = "") -> None:
        if status:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        text = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        self.display.advance(self.task, metrics=text)

    def stop(self) -> None:
        self.display.close()


_SHARED: dict[tuple[int, SandboxConfig], SandboxPool] = {}
_SHARED_LOCK = threading.Lock()


def shared_pool(config: SandboxConfig | None = None, workers: int | None = None) -> SandboxPool:
    """The process-wide pool for ``config`` (created on first use, grown to ``workers``).

    Keyed by process id too: a forked child never talks to its parent's servers.
    """
    key = (os.getpid(), config or SandboxConfig())
    with _SHARED_LOCK:
        pool = _SHARED.get(key)
        if pool is None:
            pool = _SHARED[key] = SandboxPool(key[1], workers)
        elif workers and workers > pool.workers:
            pool.workers = workers
        return pool


@atexit.register
def _close_shared() -> None:
    for (pid, _), pool in _SHARED.items():
        if pid == os.getpid():
            pool.close()
