"""The per-job init process and the confinement of each run.

The job supervisor forks this process after unsharing a pid namespace, so here it is pid 1
of a namespace of its own. It mounts the job's private work directory (``/sandbox``, also
reached as ``/tmp`` and ``/dev/shm``) and ``/proc``
(a mount namespace of its own), then, for every run it is asked for, forks the runner,
confines it (:func:`_confine`) and waits for it. When a run ends it kills every process left
in the namespace and reports the runner's exit status and resource use. When this process
dies, for any reason, the kernel kills everything left in its pid namespace.

Without namespaces (isolation ``rlimits``) it is a child subreaper instead: orphans of the run
are re-parented to it and it kills them by walking its descendants.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Sequence

from . import _linux as lx
from . import runner
from .rootfs import WORKDIR
from .runner import _kill_descendants


def run_environment(workdir: str) -> dict[str, str]:
    """The complete environment a program sees."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def init_main(sock: socket.socket, job: dict, ctx: dict) -> None:
    """Serve runs for one job until the supervisor closes ``sock``. Never returns."""
    code, workdir = 0, WORKDIR
    try:
        lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)
        limits = job["limits"]
        if ctx["namespaces"]:
            _mount_private_dirs(limits["disk_mb"], ctx)
        else:
            lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
            workdir = tempfile.mkdtemp(prefix="polyepo-run-")
            if os.geteuid() == 0:
                os.chown(workdir, ctx["uid"], ctx["uid"])
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 8)
            if not msg:
                break
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            pid = os.fork()
            if pid == 0:
                _confine(fds, job, ctx, workdir)
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"pid": pid}).encode())
            status = _wait_for(pid)
            _kill_the_rest(ctx["namespaces"])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            sock.send(json.dumps({
                "status": status,
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "max_rss_mb": after.ru_maxrss / 1024,
            }).encode())
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        if not ctx["namespaces"]:
            _kill_the_rest(False)
            shutil.rmtree(workdir, ignore_errors=True)
    os._exit(code)


def _mount_private_dirs(disk_mb: int, ctx: dict) -> None:
    lx.unshare(lx.CLONE_NEWNS)
    owner = f"uid={ctx['uid']},gid={ctx['uid']}" if ctx["level"] == "full" else "uid=0,gid=0"
    flags = lx.MS_NOSUID | lx.MS_NODEV
    lx.mount("tmpfs", WORKDIR, "tmpfs", flags, f"size={disk_mb}m,nr_inodes=4096,mode=700,{owner}")
    lx.mount("proc", "/proc", "proc", flags | lx.MS_NOEXEC)


def _wait_for(pid: int) -> int:
    """Reap children until ``pid`` exits (orphans come here too); its raw wait status."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return -1
        if got == pid:
            return status


def _kill_the_rest(namespaces: bool) -> None:
    """SIGKILL and reap every process the run left behind."""
    for _ in range(1000):
        if namespaces:
            try:
                os.kill(-1, signal.SIGKILL)  # as pid 1: every other process in this namespace
            except ProcessLookupError:
                pass
        else:
            _kill_descendants(os.getpid())
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        time.sleep(0.001)


def _confine(fds: Sequence[int], job: dict, ctx: dict, workdir: str) -> None:
    """In the forked runner: stdio, session, work dir, limits, privileges; then run. Never returns."""
    code = 1
    try:
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 0..4
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(len(high), os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        os.chdir(workdir)
        _set_limits(job["limits"])
        _drop_privileges(ctx)
        os.environ.clear()
        os.environ.update(run_environment(workdir))
        tempfile.tempdir = workdir
        runner.run(job["program"], job["mode"], ctx["namespaces"], ctx["preload"])
    except BaseException:
        import traceback

        traceback.print_exc()  # fd 2 is the run's stderr by now (or still the server's)
    os._exit(code)


def _set_limits(limits: dict) -> None:
    cpu = max(1, int(limits["cpu_s"] + 0.999))
    mem = int(limits["memory_mb"]) << 20
    for name, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_NPROC, (limits["max_processes"],) * 2),
                        (resource.RLIMIT_FSIZE, (int(limits["disk_mb"]) << 20,) * 2),
                        (resource.RLIMIT_NOFILE, (256, 256)), (resource.RLIMIT_CORE, (0, 0)),
                        (resource.RLIMIT_MEMLOCK, (0, 0)), (resource.RLIMIT_MSGQUEUE, (0, 0))):
        resource.setrlimit(name, value)


def _drop_privileges(ctx: dict) -> None:
    lx.prctl(lx.PR_SET_NO_NEW_PRIVS, 1)
    level, uid = ctx["level"], ctx["uid"]
    if level == "userns":
        lx.drop_capabilities(ctx["cap_last"])
    elif os.geteuid() == 0:  # full, or rlimits run as root
        _drop_bounding(ctx["cap_last"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability is gone
    lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it


def _drop_bounding(cap_last: int) -> None:
    for cap in range(cap_last + 1):
        try:
            lx.prctl(lx.PR_CAPBSET_DROP, cap)
        except OSError:
            pass
