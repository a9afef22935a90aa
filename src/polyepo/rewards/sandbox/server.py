"""The sandbox server: one long-lived process per worker, forking a confined tree per job.

Started by the host pool as ``python -I -c ... main()`` with an empty environment and its
stdin/stdout as the control pipes. At start it enters its isolation level once:

- ``full`` (root): new mount, network, IPC and UTS namespaces, the read-only root of
  ``rootfs.py``; runs drop to unprivileged uids of their own (one for the program, one for
  the test).
- ``userns`` (no root, user namespaces allowed): the same namespaces inside a new user
  namespace; runs keep the mapped uid with every capability dropped.
- ``rlimits``: no namespaces at all; resource limits, sessions and a subreaper only.

At every level it also tries, before entering the root, the per-job cgroups of
``cgroups.py`` (memory, pids, cpu) and builds the seccomp filter of ``seccomp.py``; what is
missing is reported in its ready message (``degraded``) and announced by the host pool.

Per job (host -> server: a frame with the program and limits, then a frame with the test):

```
server ── fork ─► supervisor: reads the program frame; makes the job's cgroups; forks init;
                  │ reads the test frame
                  └─ unshare(pid) ── fork ─► init: pid 1, own mounts, a fresh tmpfs per run
                                                   ├─ fork ─► candidate process (the program)
                                                   └─ fork ─► test process (the test) ── socket ─┘
```

The server never reads a job, so no job's data is in memory that later forks inherit. The
test exists only in the supervisor, the host and the test process; the nonce and the
expected outputs only in the supervisor and the host, never in memory the program's process
can reach. The supervisor enforces the wall timeout and the output cap, speaks the report
protocol with the test process, judges the run and returns one result frame.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import traceback

from . import _linux as lx
from . import candidate, channel, tester, verdict  # noqa: F401  (imported here once, so that forks inherit them)
from . import protocol as proto
from .supervise import supervise

_EOF = 3  # supervisor exit code: the host closed the control pipe
NAMESPACES = lx.CLONE_NEWNS | lx.CLONE_NEWNET | lx.CLONE_NEWIPC | lx.CLONE_NEWUTS


def enter_isolation(cfg: dict) -> dict:
    """Enter the requested level (or raise OSError); the context every job reads."""
    level = cfg["isolation"]
    with open("/proc/sys/kernel/cap_last_cap") as f:
        ctx = {"level": level, "uid": cfg["uid"], "test_uid": cfg["test_uid"], "cap_last": int(f.read()),
               "namespaces": level != "rlimits", "preload": cfg["preload"], "server_pid": os.getpid()}
    ctx["degraded"] = _kernel_mechanisms(ctx, cfg)
    if level == "rlimits":
        return ctx
    if level == "full":
        if os.geteuid() != 0:
            raise PermissionError("isolation 'full' needs root")
        lx.unshare(NAMESPACES)
    elif level == "userns":
        uid, gid = os.geteuid(), os.getegid()
        lx.unshare(lx.CLONE_NEWUSER | NAMESPACES)
        lx.write_id_maps(uid, gid)
    else:
        raise ValueError(f"unknown isolation level {level!r}")
    from . import rootfs

    ctx["bound"] = rootfs.build_and_enter(cfg["staging"], cfg["readable_paths"], cfg["hidden_paths"],
                                          user_namespace=level == "userns")
    socket.sethostname("sandbox")
    return ctx


def _kernel_mechanisms(ctx: dict, cfg: dict) -> dict[str, str]:
    """Set up the per-job cgroups and the seccomp filter; what is missing and why."""
    from .cgroups import ServerCgroup

    missing: dict[str, str] = {}
    ctx["cgroups"] = None
    if cfg.get("cgroups", True):
        try:
            cgroup = ServerCgroup()
            missing.update({f"cgroup {c}": why for c, why in cgroup.missing.items()})
            if cgroup.dirs:
                cgroup.enter()  # else each job's init is moved in (slower)
                ctx["cgroups"] = cgroup
        except OSError as e:
            missing["cgroups"] = f"{type(e).__name__}: {e}"
    else:
        missing["cgroups"] = "turned off (SandboxConfig.cgroups=False)"
    ctx["seccomp"] = None
    if cfg.get("seccomp", True):
        try:
            from .seccomp import build

            ctx["seccomp"] = build()
        except Exception as e:  # ImportError (pyseccomp), RuntimeError (no libseccomp), OSError
            missing["seccomp"] = f"{type(e).__name__}: {e}"
    else:
        missing["seccomp"] = "turned off (SandboxConfig.seccomp=False)"
    return missing


def run_job(ctl_in: int, ctl_out: int, ctx: dict) -> bool:
    """Fork a supervisor for the next job; forward its result (or a sandbox_error).

    The server itself never reads a job: the supervisor reads both frames (the program,
    then, after forking the run's init, the test), acknowledging each with one byte. Frames
    it did not consume are drained here. Returns False when the host closed the pipe.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            gc.disable()  # short-lived and trusted: no collections, so no copy-on-write faults
            lx.prctl(lx.PR_SET_PDEATHSIG, signal.SIGKILL)
            job = proto.read_json(ctl_in)
            if job is None:
                os._exit(_EOF)
            os.write(w, b"\x01")
            supervise(job, ctl_in, ctx, out_fd=w)  # type: ignore[arg-type]
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    os.close(w)
    result, acks = None, 0
    try:
        while acks < 2 and proto.read_exact(r, 1) is not None:
            acks += 1
        if acks == 2:
            result = proto.read_json(r)
    except proto.ProtocolError as e:
        print(f"polyepo sandbox server: {e}", file=sys.stderr)
    finally:
        os.close(r)
    if isinstance(result, dict):
        proto.write_json(ctl_out, result)  # before reaping: the supervisor may still be tidying up
        os.waitpid(pid, 0)
        return True
    _, status = os.waitpid(pid, 0)
    if acks == 0 and os.waitstatus_to_exitcode(status) == _EOF:
        return False
    for _ in range(2 - acks):
        proto.read_frame(ctl_in)
    proto.write_json(ctl_out, {"status": "sandbox_error",
                               "detail": f"the job supervisor died without a result (wait status {status})"})
    return True


def main() -> None:
    """Serve jobs on the control pipes until the host closes them."""
    cfg = json.loads(sys.argv[1])
    ctl_in, ctl_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        ctx = enter_isolation(cfg)
        for name in cfg["preload"]:
            importlib.import_module(name)
    except Exception as e:
        proto.write_json(ctl_out, {"ready": False, "error": f"{type(e).__name__}: {e}"})
        return
    gc.freeze()  # jobs are forks: keep the collector off the inherited objects (no copy-on-write storm)
    proto.write_json(ctl_out, {"ready": True, "isolation": ctx["level"], "bound": ctx.get("bound", []),
                               "degraded": ctx["degraded"]})
    while select.select([ctl_in], [], [])[0] and run_job(ctl_in, ctl_out, ctx):
        pass  # the host removes this server's cgroups once it exited
