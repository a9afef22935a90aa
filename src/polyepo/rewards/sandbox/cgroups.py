"""Per-job control groups: memory, process count and CPU share of a whole job.

Rlimits bound one process at a time; a job is several (the program, the test process and
whatever the program forks) and can hold memory no process maps (shared memory, memfd,
tmpfs files). The cgroup controllers count all of it:

- ``memory``: ``memory_mb`` for the whole job, every process, shared memory, memfd and tmpfs
  pages included, swap off; an out-of-memory kill is read back from the cgroup's event
  counter and the run is reported as ``memory``.
- ``pids``: ``max_processes`` (+ the test process, init, supervisor and server) for the job.
- ``cpu``: each job is its own scheduling group with the default weight, so a job that forks
  thirty busy processes, each in its own session, gets the same CPU share as a job with one.

A sandbox server runs one job at a time, so the cgroup of a job is its server's: at start the
server makes ``polyepo-sandbox-<pid>-<start time>`` in each hierarchy, marks itself
unkillable by the out-of-memory killer (``oom_score_adj`` -1000; run processes set theirs back
to 0) and moves itself in; its supervisors, inits and runs are born there, so no process is
ever migrated during a job (a migration costs an RCU grace period, milliseconds). Each job
sets its own limits before its first run. A server that cannot protect itself from the OOM
killer stays outside and moves each job's init in instead (slower). The directory
descriptors keep working after the server entered its read-only root. When a server is gone,
:func:`remove_stale` (the host pool calls it when a server closes, and once per process at
start) kills what is left in its cgroups and removes them.

Controllers come from cgroup v2 where it has them, else from the v1 hierarchy that does; v2
needs a parent whose controllers can be enabled for children (the root cgroup, or the parent
of the current cgroup, e.g. a systemd slice). Whatever cannot be set up is returned as a
reason and reported by the server (loud degradation).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from dataclasses import dataclass, field

CONTROLLERS = ("memory", "pids", "cpu")
PREFIX = "polyepo-sandbox-"
EXTRA_PIDS = 4  # the test process, init, supervisor and server share the job's pids limit
_RMDIR_TRIES = 50


@dataclass
class Hierarchy:
    """One mounted hierarchy and the controllers the pool uses from it."""

    version: int
    parent: str  # where server cgroups are made
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
    """A v2 cgroup under which server cgroups may enable controllers, or None."""
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
    """The start time of a live process (None for a dead or zombie one)."""
    try:
        fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _write(dir_fd: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data.decode()
    finally:
        os.close(fd)


class ServerCgroup:
    """A sandbox server's cgroup in every hierarchy: the cgroup of the job it runs."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}-{_start_time(os.getpid())}"
        self.dirs: list[tuple[Hierarchy, int]] = []
        hierarchies, self.missing = discover()
        for h in hierarchies:
            try:
                self.dirs.append((h, self._make(h)))
            except OSError as e:
                for c in h.controllers:
                    self.missing[c] = f"cgroup v{h.version} at {h.parent}: {e.strerror or e}"
        self.inside = False
        self.limits: tuple[int, int] | None = None

    def _make(self, h: Hierarchy) -> int:
        path = os.path.join(h.parent, self.name)
        if h.version == 2:
            enabled = set(_read(os.path.join(h.parent, "cgroup.subtree_control")).split())
            missing = [c for c in h.controllers if c not in enabled]
            if missing:
                with open(os.path.join(h.parent, "cgroup.subtree_control"), "w") as f:
                    f.write(" ".join("+" + c for c in missing))
        os.mkdir(path, 0o755)
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            os.rmdir(path)
            raise

    def enter(self) -> bool:
        """Move this process in, protected from the OOM killer; False if it cannot be protected."""
        if not self.dirs:
            return False
        try:
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("-1000")
        except OSError:
            return False
        for _, fd in self.dirs:
            _write(fd, "cgroup.procs", "0")
        self.inside = True
        return True

    def attach(self, pid: int) -> None:
        """Move process ``pid`` in (when the server could not enter itself)."""
        for _, fd in self.dirs:
            _write(fd, "cgroup.procs", str(pid))

    def set_limits(self, limits: dict) -> None:
        """The job's memory and process limits (written only when they change)."""
        memory = int(limits["memory_mb"]) << 20
        pids = int(limits["max_processes"]) + EXTRA_PIDS
        if self.limits == (memory, pids):
            return
        for h, fd in self.dirs:
            if "memory" in h.controllers:
                _set_memory(h.version, fd, memory)
            if "pids" in h.controllers:
                _write(fd, "pids.max", str(pids))
        self.limits = (memory, pids)

    def oom_kills(self) -> int:
        """Processes the kernel killed for memory in this cgroup so far."""
        for h, fd in self.dirs:
            if "memory" not in h.controllers:
                continue
            try:
                text = _read_at(fd, "memory.events" if h.version == 2 else "memory.oom_control")
            except OSError:
                return 0
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def processes(self) -> set[int]:
        """Process ids in the cgroup (as this process's pid namespace sees them)."""
        out: set[int] = set()
        for _, fd in self.dirs:
            try:
                out.update(int(p) for p in _read_at(fd, "cgroup.procs").split())
            except OSError:
                pass
        return out

    def kill_except(self, keep: set[int]) -> None:
        """SIGKILL every process in the cgroup but ``keep``."""
        for pid in self.processes() - keep:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _set_memory(version: int, fd: int, limit: int) -> None:
    if version == 2:
        _write(fd, "memory.max", str(limit))
        try:
            _write(fd, "memory.swap.max", "0")
        except FileNotFoundError:
            pass
        return
    # v1: memory+swap must stay >= memory, so the order depends on the direction of the change
    names = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
    try:
        current = int(_read_at(fd, names[0]))
    except (OSError, ValueError):
        current = 0
    for name in names if limit <= current else reversed(names):
        try:
            _write(fd, name, str(limit))
        except FileNotFoundError:
            if name == names[0]:
                raise


def _remove(parent_fd: int, name: str) -> bool:
    """Kill the processes of cgroup ``name`` and remove it; False if it is still busy."""
    for _ in range(_RMDIR_TRIES):
        try:
            pids = [int(p) for p in _read_at(parent_fd, f"{name}/cgroup.procs").split()]
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.rmdir(name, dir_fd=parent_fd)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                return False
        time.sleep(0.002)
    return False


def remove_stale(only_pid: int | None = None) -> int:
    """Remove server cgroups whose server is gone (``only_pid``: that server's); how many."""
    removed = 0
    hierarchies, _ = discover()
    for h in hierarchies:
        try:
            names = [n for n in os.listdir(h.parent) if n.startswith(PREFIX)]
            parent = os.open(h.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            for name in names:
                pid, _, start = name[len(PREFIX):].partition("-")
                if not pid.isdigit() or (only_pid is not None and int(pid) != only_pid):
                    continue
                if _start_time(int(pid)) == start:
                    continue  # its server is alive
                removed += _remove(parent, name)
        finally:
            os.close(parent)
    return removed
