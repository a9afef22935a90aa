"""The per-job init process and the confinement of each run's processes.

The job supervisor forks this process after unsharing a pid namespace, so here it is pid 1
of a namespace of its own. It has a mount namespace of its own with its own ``/proc``; each
run process gets an IPC namespace of its own (System V shared memory, message queues and
semaphores die with the run) and a cgroup namespace rooted at the job's cgroup. For every
run it is asked for, it mounts a fresh work directory (``/sandbox``, also reached as ``/tmp``
and ``/dev/shm``: each stdin/stdout case starts from an empty one), forks the run's processes,
confines them (:func:`_confine`) and waits:

- function tests: the *candidate* process (runs the program, answers calls) and the *test*
  process (runs the test, calls the program through a socket pair, reports to the supervisor),
  under different uids where the isolation level allows;
- stdin/stdout: the candidate process alone.

When the run ends (the test process exited; in stdin/stdout mode the program) it kills every
process left in the namespace and reports the wait statuses and resource use. When this
process dies, for any reason, the kernel kills everything left in its pid namespace.

Without namespaces (isolation ``rlimits``) it is a child subreaper instead: orphans of the run
are re-parented to it and it kills them by walking its descendants (and through the job's
cgroup, where there is one).
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
from . import candidate, tester
from .protocol import WORKDIR_PREFIX
from .rootfs import WORKDIR


def run_environment(workdir: str) -> dict[str, str]:
    """The complete environment a program sees."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def init_main(sock: socket.socket, job: dict, ctx: dict) -> None:
    """Serve runs for one job until the supervisor closes ``sock``. Never returns."""
    code = 0
    try:
        lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)
        if ctx["namespaces"]:
            lx.unshare(lx.CLONE_NEWNS)
            lx.mount("proc", "/proc", "proc", lx.MS_NOSUID | lx.MS_NODEV | lx.MS_NOEXEC)
        else:
            lx.prctl(lx.PR_SET_CHILD_SUBREAPER, 1)
        while True:
            msg, fds, _, _ = socket.recv_fds(sock, 64, 8)
            if not msg:
                break
            report = _one_run(sock, fds, job, ctx)
            sock.send(json.dumps(report).encode())
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        if not ctx["namespaces"]:
            _kill_the_rest(False)
    os._exit(code)


def _one_run(sock: socket.socket, fds: Sequence[int], job: dict, ctx: dict) -> dict:
    """Fork the run's processes in a fresh work directory, wait for them, clean up; the report.

    The supervisor hears the process ids at once (``{"pids": [...]}``) and the report at the end.
    """
    workdir = _fresh_workdir(job["limits"]["disk_mb"], ctx)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        try:
            program, test = _spawn_run(fds, job, ctx, workdir)
        finally:
            for fd in fds:  # the run's processes hold their own copies
                os.close(fd)
        sock.send(json.dumps({"pids": sorted({test, program})}).encode())
        statuses = _wait_for(test, program)
        _kill_the_rest(ctx["namespaces"])
    finally:
        _drop_workdir(workdir, ctx)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"status": statuses.get(test, -1), "program_status": statuses.get(program) if program != test else None,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "max_rss_mb": after.ru_maxrss / 1024}


def _spawn_run(fds: Sequence[int], job: dict, ctx: dict, workdir: str) -> tuple[int, int]:
    """Fork the run's processes: (program pid, the pid whose end ends the run)."""
    stdin_r, out_w, err_w, rep_w, test_r = fds
    if job["mode"] != "function":
        program = _spawn("candidate", [stdin_r, out_w, err_w], job, ctx, workdir)
        return program, program
    chan_c, chan_t = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        program = _spawn("candidate", [stdin_r, out_w, err_w, chan_c.fileno()], job, ctx, workdir)
        test = _spawn("test", [stdin_r, out_w, err_w, rep_w, test_r, chan_t.fileno()], job, ctx, "/")
    finally:
        chan_c.close()
        chan_t.close()
    return program, test


def _fresh_workdir(disk_mb: int, ctx: dict) -> str:
    """An empty private work directory for one run: a new tmpfs on /sandbox, or a temp dir."""
    if ctx["namespaces"]:
        owner = f"uid={ctx['uid']},gid={ctx['uid']}" if ctx["level"] == "full" else "uid=0,gid=0"
        lx.mount("tmpfs", WORKDIR, "tmpfs", lx.MS_NOSUID | lx.MS_NODEV,
                 f"size={disk_mb}m,nr_inodes=4096,mode=700,{owner}")
        return WORKDIR
    # named after its supervisor (alive while the job runs) and its server (whose pool owns it)
    workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getppid()}-s{ctx['server_pid']}-")
    if os.geteuid() == 0:
        os.chown(workdir, ctx["uid"], ctx["uid"])
    return workdir


def _drop_workdir(workdir: str, ctx: dict) -> None:
    if ctx["namespaces"]:
        lx.umount(WORKDIR, lx.MNT_DETACH)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _spawn(role: str, fds: Sequence[int], job: dict, ctx: dict, workdir: str) -> int:
    pid = os.fork()
    if pid == 0:
        _confine(role, fds, job, ctx, workdir)
    return pid


def _wait_for(test: int, program: int) -> dict[int, int]:
    """Reap children (orphans come here too) until ``test`` exits; wait statuses of both by pid."""
    statuses: dict[int, int] = {}
    while test not in statuses:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if got in (test, program):
            statuses[got] = status
    return statuses


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


def _kill_the_rest(namespaces: bool) -> None:
    """SIGKILL and reap every process the run left behind (bounded: ~1 s at most)."""
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


def _confine(role: str, fds: Sequence[int], job: dict, ctx: dict, workdir: str) -> None:
    """In a forked run process: namespaces, stdio, session, limits, privileges, seccomp; then run."""
    code = 1
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("0")  # the server, supervisor and init are -1000: the OOM killer picks runs
        if ctx["namespaces"] and role == "candidate":  # its cgroup is its root; its IPC objects die with it
            lx.unshare(lx.CLONE_NEWCGROUP | lx.CLONE_NEWIPC)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]  # out of the way of 0..5
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(len(high), os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        os.chdir(workdir)
        _set_limits(job["limits"], role)
        _drop_privileges(ctx, role)
        os.environ.clear()
        os.environ.update(run_environment(workdir if role == "candidate" else "/"))
        tempfile.tempdir = workdir
        if ctx.get("seccomp") is not None:
            ctx["seccomp"].load()
        if role == "candidate":
            candidate.run(job["program"], job["mode"])
        else:
            tester.run()
    except BaseException:
        import traceback

        traceback.print_exc()  # fd 2 is the run's stderr by now (or still the server's)
    os._exit(code)


def _set_limits(limits: dict, role: str) -> None:
    cpu = max(1, int(limits["cpu_s"] + 0.999))
    mem = int(limits["memory_mb"]) << 20
    nproc = limits["max_processes"] if role == "candidate" else 1
    for name, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_CPU, (cpu, cpu + 1)),
                        (resource.RLIMIT_NPROC, (nproc, nproc)),
                        (resource.RLIMIT_FSIZE, (int(limits["disk_mb"]) << 20,) * 2),
                        (resource.RLIMIT_NOFILE, (256, 256)), (resource.RLIMIT_CORE, (0, 0)),
                        (resource.RLIMIT_MEMLOCK, (0, 0)), (resource.RLIMIT_MSGQUEUE, (0, 0))):
        resource.setrlimit(name, value)


def _drop_privileges(ctx: dict, role: str) -> None:
    lx.prctl(lx.PR_SET_NO_NEW_PRIVS, 1)
    level = ctx["level"]
    uid = ctx["uid"] if role == "candidate" else ctx["test_uid"]
    if level == "userns":
        lx.drop_capabilities(ctx["cap_last"])
    elif os.geteuid() == 0:  # full, or rlimits run as root
        _drop_bounding(ctx["cap_last"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from root to another uid: every capability is gone
    if role == "test":
        lx.prctl(lx.PR_SET_DUMPABLE, 0)  # the program cannot ptrace it or open its /proc files
    lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it


def _drop_bounding(cap_last: int) -> None:
    for cap in range(cap_last + 1):
        try:
            lx.prctl(lx.PR_CAPBSET_DROP, cap)
        except OSError:
            pass
