"""Per-job control groups: memory, process count and CPU share of a whole job.

Rlimits bound one process at a time; a job is several (the program, the test process and
whatever the program forks) and can hold memory no process maps (shared memory, memfd,
tmpfs files). The cgroup controllers count all of it:

- ``memory``: ``memory_mb`` for the whole job, every process, shared memory, memfd and tmpfs
  pages included; an out-of-memory kill is read back from the cgroup's event counter and the
  run is reported as ``memory``.
- ``pids``: ``max_processes`` (+1 for the test process) for the whole job.
- ``cpu``: each job is its own scheduling group with the default weight, so a job that forks
  thirty busy processes, each in its own session, gets the same CPU share as a job with one.

Each sandbox server makes one pool cgroup per hierarchy at start (``polyepo-sandbox-<pid>-
<start time>``; jobs' cgroups ``job-<pid>`` go below it), holds directory descriptors to it
(they keep working after the server entered its read-only root) and removes it when it
exits. A server that was killed leaves an empty pool behind: :func:`remove_stale` (the host
pool calls it once per process) kills what is left in pools whose server is gone and removes
them. Controllers come from cgroup v2 where it has them, else from the v1 hierarchy that
does; v2 needs a parent whose controllers can be enabled for children (the root cgroup, or
the parent of the current cgroup, e.g. a systemd slice). Whatever cannot be set up is
returned as a reason and reported by the server (loud degradation).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "polyepo-sandbox-"
_RMDIR_TRIES = 50


@dataclass
class Hierarchy:
    """One mounted hierarchy and the controllers the pool uses from it."""

    version: int
    parent: str  # where pool cgroups are made
    controllers: list[str] = field(default_factory=list)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount point, root, fstype, options) of every cgroup mount."""
    out = []
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(parts) >= 5 and rparts and rparts[0] in ("cgroup", "cgroup2"):
            options = set(rparts[2].split(",")) if len(rparts) > 2 else set()
            out.append((parts[4], parts[3], rparts[0], options))
    return out


def _own_paths() -> dict[str, str]:
    """Controller (or ``""`` for v2) -> this process's cgroup path."""
    out = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _on_disk(mount: str, root: str, path: str) -> str:
    rel = path[len(root):] if root != "/" and path.startswith(root) else path
    return os.path.normpath(mount + "/" + rel.lstrip("/"))


def _v2_parent(mount: str, root: str, own: str) -> str | None:
    """A v2 cgroup under which pool cgroups may enable controllers, or None."""
    here = _on_disk(mount, root, own)
    parent = here if os.path.normpath(here) == os.path.normpath(mount) else os.path.dirname(here)
    return parent if os.access(parent, os.W_OK) else None


def discover() -> tuple[list[Hierarchy], dict[str, str]]:
    """Where each controller can be used: hierarchies, and a reason per missing controller."""
    own, found, reasons = _own_paths(), {}, {}
    mounts = _mounts()
    for mount, root, fstype, _ in mounts:
        if fstype != "cgroup2" or "" not in own:
            continue
        parent = _v2_parent(mount, root, own[""])
        if parent is None:
            continue
        try:
            available = set(_read(os.path.join(parent, "cgroup.controllers")).split())
        except OSError:
            continue
        wanted = [c for c in CONTROLLERS if c in available]
        if wanted:
            found[("v2", parent)] = Hierarchy(2, parent, wanted)
    have = {c for h in found.values() for c in h.controllers}
    for controller in CONTROLLERS:
        if controller in have:
            continue
        for mount, root, fstype, options in mounts:
            if fstype == "cgroup" and controller in options and controller in own:
                parent = _on_disk(mount, root, own[controller])
                if os.access(parent, os.W_OK):
                    found.setdefault(("v1", mount), Hierarchy(1, parent)).controllers.append(controller)
                    break
        else:
            reasons[controller] = "no writable cgroup hierarchy has it"
    return list(found.values()), reasons


def _start_time(pid: int) -> str | None:
    try:
        return _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _write(dir_fd: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class PoolCgroups:
    """The pool cgroups of one sandbox server (one per hierarchy) and its jobs' cgroups."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{_start_time(os.getpid())}"
        self.dirs: list[tuple[Hierarchy, int]] = []
        self.parents: list[int] = []  # descriptors of the parents (the pool is removed through them)
        hierarchies, self.missing = discover()
        for h in hierarchies:
            try:
                self.dirs.append((h, self._make_pool(h)))
                self.parents.append(os.open(h.parent, os.O_RDONLY | os.O_DIRECTORY))
            except OSError as e:
                for c in h.controllers:
                    self.missing[c] = f"cgroup v{h.version} at {h.parent}: {e.strerror or e}"

    @property
    def controllers(self) -> list[str]:
        return [c for h, _ in self.dirs for c in h.controllers]

    def _make_pool(self, h: Hierarchy) -> int:
        path = os.path.join(h.parent, self.name)
        if h.version == 2:
            enabled = set(_read(os.path.join(h.parent, "cgroup.subtree_control")).split())
            missing = [c for c in h.controllers if c not in enabled]
            if missing:
                with open(os.path.join(h.parent, "cgroup.subtree_control"), "w") as f:
                    f.write(" ".join("+" + c for c in missing))
        os.mkdir(path, 0o755)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            if h.version == 2:
                _write(fd, "cgroup.subtree_control", " ".join("+" + c for c in h.controllers))
        except OSError:
            os.rmdir(path)
            raise
        return fd

    def make_job(self, limits: dict) -> JobCgroup:
        """A fresh cgroup for one job in every hierarchy, with the job's limits set."""
        return JobCgroup(self, f"job-{os.getpid()}", limits)

    def close(self) -> None:
        """Remove the pool cgroups (jobs' cgroups first)."""
        for (_, fd), parent in zip(self.dirs, self.parents):
            for name in os.listdir(fd):
                if name.startswith("job-"):
                    _remove(fd, name)
            os.close(fd)
            _remove(parent, self.name)
            os.close(parent)
        self.dirs, self.parents = [], []


class JobCgroup:
    """One job's cgroups. ``attach_fds`` are what a run process writes "0" to, to join."""

    def __init__(self, pool: PoolCgroups, name: str, limits: dict) -> None:
        self.name, self.dirs, self.attach_fds = name, [], []
        memory = int(limits["memory_mb"]) << 20
        for h, pool_fd in pool.dirs:
            os.mkdir(name, 0o755, dir_fd=pool_fd)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=pool_fd)
            self.dirs.append((h, pool_fd, fd))
            if "memory" in h.controllers:
                for key, value in (_memory_files(h.version, memory)):
                    try:
                        _write(fd, key, value)
                    except FileNotFoundError:
                        if key in ("memory.max", "memory.limit_in_bytes"):
                            raise
            if "pids" in h.controllers:
                _write(fd, "pids.max", str(int(limits["max_processes"]) + 1))
            self.attach_fds.append(os.open("cgroup.procs", os.O_WRONLY, dir_fd=fd))

    def oom_kills(self) -> int:
        """Processes of this job the kernel killed for memory so far."""
        for h, _, fd in self.dirs:
            if "memory" not in h.controllers:
                continue
            name = "memory.events" if h.version == 2 else "memory.oom_control"
            try:
                fd2 = os.open(name, os.O_RDONLY, dir_fd=fd)
                text = os.read(fd2, 4096).decode()
                os.close(fd2)
            except OSError:
                return 0
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def kill(self) -> None:
        """SIGKILL every process in the job's cgroups."""
        for _, pool_fd, _ in self.dirs:
            for pid in _procs(pool_fd, self.name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def close_attach(self) -> None:
        for fd in self.attach_fds:
            os.close(fd)
        self.attach_fds = []

    def remove(self) -> None:
        """Kill anything left in the job's cgroups, then remove them."""
        self.close_attach()
        for _, pool_fd, fd in self.dirs:
            os.close(fd)
            _remove(pool_fd, self.name)
        self.dirs = []


def _memory_files(version: int, limit: int) -> list[tuple[str, str]]:
    if version == 2:
        return [("memory.max", str(limit)), ("memory.swap.max", "0")]
    return [("memory.limit_in_bytes", str(limit)), ("memory.memsw.limit_in_bytes", str(limit))]


def _procs(pool_fd: int, name: str) -> list[int]:
    try:
        fd = os.open(f"{name}/cgroup.procs", os.O_RDONLY, dir_fd=pool_fd)
    except OSError:
        return []
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return [int(p) for p in data.split()]


def _remove(pool_fd: int, name: str) -> bool:
    """Kill the processes of cgroup ``name`` and remove it; False if it is still busy."""
    for _ in range(_RMDIR_TRIES):
        for pid in _procs(pool_fd, name):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.rmdir(name, dir_fd=pool_fd)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                return False
        time.sleep(0.002)
    return False


def remove_stale() -> int:
    """Remove pool cgroups whose server is gone (a killed pool's leftovers); how many."""
    removed = 0
    hierarchies, _ = discover()
    for h in hierarchies:
        try:
            names = [n for n in os.listdir(h.parent) if n.startswith(PREFIX)]
        except OSError:
            continue
        for name in names:
            pid, _, start = name[len(PREFIX):].partition("-")
            if pid.isdigit() and _start_time(int(pid)) == start:
                continue  # its server is alive
            try:
                fd = os.open(os.path.join(h.parent, name), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                for job in [n for n in os.listdir(fd) if n.startswith("job-")]:
                    _remove(fd, job)
            finally:
                os.close(fd)
            try:
                os.rmdir(os.path.join(h.parent, name))
                removed += 1
            except OSError:
                pass
    return removed
