"""Helpers shared by the sandbox tests: leak checks on the host and failure injection."""

from __future__ import annotations

import os
import signal
import threading
import time

from polyepo.rewards.sandbox import SandboxPool

SANDBOX_UID_MIN = 1_000_000_000  # runs drop to uids from here up (isolation "full")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def run_processes(pool: SandboxPool) -> list[int]:
    """Processes below the servers' supervisors and init processes: runs and what they started.

    server -> supervisor -> init -> runner -> ...; anything at depth >= 3 under a server is
    a run or one of its descendants. Once a call returned there must be none.
    """
    found, todo = [], [(pid, 0) for pid in pool.server_pids()]
    while todo:
        pid, depth = todo.pop()
        if depth >= 3:
            found.append(pid)
        todo += [(c, depth + 1) for c in _children(pid)]
    return found


def sandbox_uid_processes() -> list[int]:
    """Host processes running under a sandbox uid (isolation "full")."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue
        if uid >= SANDBOX_UID_MIN:
            out.append(int(name))
    return out


def assert_nothing_left(pool: SandboxPool) -> None:
    """No run process survives the call (checked right after it returned)."""
    assert run_processes(pool) == []
    if pool.isolation == "full":
        assert sandbox_uid_processes() == []


class SupervisorKiller(threading.Thread):
    """Kill job supervisors (a server's children) that have run ``min_age_s``: a sandbox failure.

    Only supervisors of slow jobs are hit, so quick jobs running beside them are not.
    """

    def __init__(self, pool: SandboxPool, times: int, min_age_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.pool, self.times, self.min_age_s, self.killed = pool, times, min_age_s, 0
        self.stop = threading.Event()

    def run(self) -> None:
        first_seen: dict[int, float] = {}
        while not self.stop.is_set() and self.killed < self.times:
            now = time.monotonic()
            for server in self.pool.server_pids():
                for child in _children(server):
                    seen = first_seen.setdefault(child, now)
                    if seen is not None and now - seen >= self.min_age_s:
                        first_seen[child] = None  # type: ignore[assignment]
                        try:
                            os.kill(child, signal.SIGKILL)
                            self.killed += 1
                        except ProcessLookupError:
                            pass
            time.sleep(0.005)
