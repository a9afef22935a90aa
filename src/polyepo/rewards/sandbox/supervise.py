"""The job supervisor: drives every run of a job through the init process and judges it.

It holds the nonce and the expected outputs; the program's process never sees them, nor the
test (only the test process does). Per job it makes the job's cgroups and enters new pid and
IPC namespaces before forking init. For each run it hands init fresh pipes (stdin, stdout,
stderr, report, test), sends the test to the test process at once, multiplexes the pipes with
a wall-clock deadline, caps the output, follows the test process's reports (P: the program is
loaded; T: the test ran to its end -> nonce; K == nonce -> passed) and kills the run's whole
pid namespace on a timeout, an output overflow or a protocol violation.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time

from . import _linux as lx
from . import protocol as proto
from .cgroups import ServerCgroup
from .init import init_main
from .verdict import verdict

_GRACE_S = 5.0  # after a kill: how long the run's pipes may take to close before it is a sandbox error


def supervise(job: dict, ctl_in: int, ctx: dict, out_fd: int) -> None:
    """Run every case of ``job`` and write the result to ``out_fd``.

    The test frame is read from ``ctl_in`` only after the init process was forked; one byte
    on ``out_fd`` tells the server it was read. The result is written once every process of
    the job is known to be gone: at once when init reported (it killed and reaped them all),
    after reaping init when it had to be killed (its namespace dies with it).
    """
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cgroup: ServerCgroup | None = ctx.get("cgroups")
    if cgroup is not None:
        cgroup.set_limits(job["limits"])
    if ctx["namespaces"]:
        lx.unshare(lx.CLONE_NEWPID)
    ipid = os.fork()
    if ipid == 0:
        parent.close()
        keep = child.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        init_main(child, job, ctx)
    child.close()
    if cgroup is not None and not cgroup.inside:
        cgroup.attach(ipid)  # before the first run is asked for
    spec = proto.read_json(ctl_in)
    os.write(out_fd, b"\x02")
    result, clean = _judge_job(job, spec, parent, ipid, ctx, cgroup)  # type: ignore[arg-type]
    parent.close()  # init exits on EOF
    if clean:
        proto.write_json(out_fd, result)
    _reap(ipid)
    if not clean:
        proto.write_json(out_fd, result)
    if cgroup is not None:
        cgroup.kill_except({os.getppid(), os.getpid()})  # whatever escaped init (isolation rlimits)


def _reap(pid: int) -> None:
    deadline = time.monotonic() + _GRACE_S
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.0005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _judge_job(job: dict, spec: dict, sock: socket.socket, ipid: int, ctx: dict,
               cgroup: ServerCgroup | None) -> tuple[dict, bool]:
    """The job's result, and whether init reported the last run (so nothing is left)."""
    cases = spec.get("cases") if job["mode"] == "stdio" else [None]
    total = {"cases_total": len(cases) if job["mode"] == "stdio" else 0, "cases_run": 0, "cases_passed": 0,
             "wall_s": 0.0, "cpu_s": 0.0, "max_rss_mb": 0.0}
    outcome: dict = {}
    clean = True
    for index, case in enumerate(cases):
        run = _Run(job, spec, case, sock, ipid, ctx, cgroup)
        outcome = run.execute()
        clean = run.final is not None
        total["cases_run"] += 1
        total["wall_s"] += outcome.pop("wall_s")
        total["cpu_s"] += outcome.pop("cpu_s")
        total["max_rss_mb"] = max(total["max_rss_mb"], outcome.pop("max_rss_mb"))
        if outcome["status"] != "passed":
            if case is not None:
                outcome["detail"] = f"case {index}: {outcome['detail']}"
                outcome["failed_case"] = index
            break
        total["cases_passed"] += case is not None
    return {**outcome, **total}, clean


class _Run:
    """One run of the program (and, in function mode, of the test)."""

    def __init__(self, job: dict, spec: dict, case: dict | None, sock: socket.socket, ipid: int, ctx: dict,
                 cgroup: ServerCgroup | None = None):
        self.limits, self.mode, self.spec, self.case = job["limits"], job["mode"], spec, case
        self.sock, self.ipid, self.namespaces, self.cgroup = sock, ipid, ctx["namespaces"], cgroup
        self.oom_before = cgroup.oom_kills() if cgroup else 0
        self.oom_killed = False
        self.nonce = os.urandom(16)
        self.out, self.err, self.reports = bytearray(), bytearray(), bytearray()
        self.output_bytes = 0
        self.phase = "program"
        self.killed_for: str | None = None
        self.proof = False
        self.failure: str | None = None
        self.error: tuple[str, str] | None = None
        self.forged: str | None = None
        self.pids: list[int] = []
        self.final: dict | None = None
        self.init_died = False

    def execute(self) -> dict:
        stdin_r, stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        rep_r, rep_w = os.pipe()
        test_r, test_w = os.pipe()
        child_ends = [stdin_r, out_w, err_w, rep_w, test_r]
        start = time.monotonic()
        socket.send_fds(self.sock, [b"run"], child_ends)
        for fd in child_ends:
            os.close(fd)
        pending = {test_w: bytearray()}
        if self.mode == "function":  # the test process is trusted: it gets the test at once
            pending[test_w] += proto.frame(json.dumps({
                "test": self.spec.get("test") or "", "entry_point": self.spec.get("entry_point"),
                "helpers": self.spec.get("helpers")}).encode())
        if self.case is not None:
            pending[stdin_w] = bytearray(self.case["input"].encode())
        else:
            os.close(stdin_w)
        for fd in pending:
            os.set_blocking(fd, False)
        readers = {out_r: self._on_out, err_r: self._on_err, rep_r: self._on_report, self.sock.fileno(): None}
        self.test_w = test_w
        self.pending = pending
        try:
            self._loop(readers, start)
        finally:
            for fd in [out_r, err_r, rep_r, *pending]:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.cgroup is not None:
            self.oom_killed = self.cgroup.oom_kills() > self.oom_before
        outcome = self._verdict()
        outcome["wall_s"] = time.monotonic() - start
        outcome["cpu_s"] = (self.final or {}).get("cpu_s", 0.0)
        outcome["max_rss_mb"] = (self.final or {}).get("max_rss_mb", 0.0)
        keep = int(self.limits["keep_chars"])
        outcome["stdout"] = self.out[:keep * 4].decode("utf-8", "replace")[:keep]
        outcome["stderr"] = self.err[:keep * 4].decode("utf-8", "replace")[-keep:]
        return outcome

    def _loop(self, readers: dict, start: float) -> None:
        deadline = start + float(self.limits["timeout_s"])
        sock_fd = self.sock.fileno()
        while readers:  # until the run's pipes are closed and init reported (or died)
            now = time.monotonic()
            if now >= deadline:
                if self.killed_for is None:
                    self._kill("timeout")
                    deadline = now + _GRACE_S
                    continue
                raise RuntimeError("the run did not stop after SIGKILL")
            writable = [fd for fd, data in self.pending.items() if data]
            ready_r, ready_w, _ = select.select(list(readers), writable, [], deadline - now)
            for fd in ready_w:
                self._write(fd)
            for fd in ready_r:
                if fd == sock_fd:
                    self._on_init(readers)
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    del readers[fd]
                else:
                    readers[fd](data)
            if self.final is not None and sock_fd in readers:
                del readers[sock_fd]

    def _write(self, fd: int) -> None:
        data = self.pending[fd]
        try:
            n = os.write(fd, data[:1 << 16])
        except (BrokenPipeError, BlockingIOError) as e:
            if isinstance(e, BrokenPipeError):
                data.clear()
            return
        del data[:n]
        if not data and fd != self.test_w:
            os.close(fd)
            del self.pending[fd]

    def _on_init(self, readers: dict) -> None:
        msg = self.sock.recv(4096)
        if not msg:
            del readers[self.sock.fileno()]
            if self.killed_for is None and self.final is None:
                self.init_died = True
            return
        info = json.loads(msg)
        if "pids" in info:
            self.pids = list(info["pids"])
        else:
            self.final = info

    def _on_out(self, data: bytes) -> None:
        self._count(len(data))
        room = int(self.limits["max_output_bytes"]) - len(self.out)
        self.out += data[:max(0, room)]

    def _on_err(self, data: bytes) -> None:
        self._count(len(data))
        if len(self.err) < 1 << 16:
            self.err += data

    def _count(self, n: int) -> None:
        self.output_bytes += n
        if self.output_bytes > int(self.limits["max_output_bytes"]) and self.killed_for is None:
            self._kill("output_limit")

    def _on_report(self, data: bytes) -> None:
        self.reports += data
        try:
            messages = proto.parse_reports(self.reports)
        except proto.ProtocolError as e:
            return self._forgery(str(e))
        for tag, payload in messages:
            self._on_message(tag, payload)

    def _on_message(self, tag: bytes, payload: bytes) -> None:
        if tag == proto.TAG_ERROR:
            kind, _, text = payload.decode("utf-8", "replace").partition("\n")
            self.error = self.error or (kind, text)
        elif tag == proto.TAG_FAILED and self.phase == "test":
            self.failure = self.failure or payload.decode("utf-8", "replace")
        elif tag == proto.TAG_PROGRAM_DONE and self.phase == "program" and self.mode == "function":
            self.phase = "test"
        elif tag == proto.TAG_TEST_DONE and self.phase == "test" and self.failure is None:
            self.pending[self.test_w] += proto.frame(self.nonce)
            self.phase = "proof"
        elif tag == proto.TAG_PROOF and self.phase == "proof" and payload == self.nonce:
            self.proof = True
            self.phase = "done"
        elif self.phase != "done":
            self._forgery(f"unexpected report {tag!r} in phase {self.phase}")

    def _forgery(self, why: str) -> None:
        if self.forged is None:
            self.forged = why
            self._kill("forged")

    def _kill(self, reason: str) -> None:
        self.killed_for = self.killed_for or reason
        try:
            if self.namespaces:
                os.kill(self.ipid, signal.SIGKILL)  # pid 1 of the run's namespace: all of it dies
            else:
                for pid in self.pids:
                    try:
                        os.killpg(pid, signal.SIGKILL)  # the run process's session (it called setsid)
                    except ProcessLookupError:
                        try:
                            os.kill(pid, signal.SIGKILL)  # not a group leader yet
                        except ProcessLookupError:
                            pass
                if self.cgroup is not None:  # whatever left the sessions
                    self.cgroup.kill_except({os.getppid(), os.getpid(), self.ipid})
        except ProcessLookupError:
            pass

    def _verdict(self) -> dict:
        """Status and detail of this run, from what was observed (see docs/rewards.md)."""
        return verdict(self)
