"""Helpers shared by the sandbox tests: leak checks on the host and failure injection.

Every check looks at this pool's own processes, uids and cgroups only, so two test runs on
one machine never see each other's jobs.
"""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import threading
import time

from polyepo.rewards.sandbox import SandboxPool
from polyepo.rewards.sandbox.cgroups import discover


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


def sandbox_uid_processes(pool: SandboxPool) -> list[int]:
    """Host processes running under one of this pool's uids (isolation "full")."""
    uids, out = pool.uids(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
        except (OSError, StopIteration, ValueError):
            continue
        if uid in uids:
            out.append(int(name))
    return out


def host_ipc_objects(uids: set[int]) -> list[str]:
    """System V shared memory, message queues and semaphores on the host owned by ``uids``."""
    out = []
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header, *rows = f.read().splitlines()
        except OSError:
            continue
        column = header.split().index("uid")
        out += [f"{kind}: {row}" for row in rows if int(row.split()[column]) in uids]
    return out


def host_ipc_count() -> int:
    """All System V IPC objects in the host's IPC namespace."""
    total = 0
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                total += len(f.read().splitlines()) - 1
        except OSError:
            pass
    return total


def key_users(uids: set[int]) -> list[str]:
    """Lines of /proc/key-users for ``uids`` (a uid with kernel keys or keyrings)."""
    try:
        with open("/proc/key-users") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    return [line for line in lines if int(line.split(":")[0]) in uids]


def cgroup_leftovers(pool: SandboxPool) -> list[int]:
    """Processes in this pool's servers' cgroups other than the servers themselves."""
    hierarchies, _ = discover()
    servers, out = set(pool.server_pids()), set()
    for pid in servers:
        for h in hierarchies:
            for path in glob.glob(os.path.join(h.parent, f"polyepo-sandbox-{pid}-*", "cgroup.procs")):
                try:
                    with open(path) as f:
                        out.update(int(p) for p in f.read().split())
                except OSError:
                    pass
    return sorted(out - servers)


def leftover_files(pool: SandboxPool) -> list[str]:
    """Work directories of this pool's jobs (isolation "rlimits") still on the host (named
    ``polyepo-run-<supervisor>-s<server>-...``; other pools' are not looked at)."""
    return [p for pid in pool.server_pids()
            for p in glob.glob(os.path.join(tempfile.gettempdir(), f"polyepo-run-*-s{pid}-*"))]


def assert_nothing_left(pool: SandboxPool) -> None:
    """Nothing of a job survives the call: processes (also in its cgroup), IPC objects, kernel keys, files."""
    assert run_processes(pool) == []
    uids = pool.uids()
    if pool.isolation == "full":
        assert sandbox_uid_processes(pool) == []
        assert host_ipc_objects(uids) == []
        assert key_users(uids) == []
    assert leftover_files(pool) == []
    deadline = time.monotonic() + 2.0  # the supervisor tidies up right after it sent the result
    while cgroup_leftovers(pool) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cgroup_leftovers(pool) == []


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
