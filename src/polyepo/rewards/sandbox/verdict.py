"""Turn what the supervisor observed during a run into a status and a one-line detail.

Order matters: a broken sandbox first, then a forged report, then the proof (the only way to
``passed`` in function mode), then the limits, then what the program or the test reported.
Reports from the runner other than the proof only refine *why* a run did not pass; a program
that forges them can only make its own verdict worse.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from .protocol import outputs_match


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def verdict(run: Any) -> dict:
    """Status, detail, exit code and signal of one run (``run`` is a supervise._Run)."""
    final = run.final or {}
    raw = final.get("status")
    code = os.waitstatus_to_exitcode(raw) if isinstance(raw, int) and raw >= 0 else None
    sig = -code if code is not None and code < 0 else None
    base = {"exit_code": code if code is not None and code >= 0 else None,
            "signal": _signal_name(sig) if sig else None}

    def result(status: str, detail: str) -> dict:
        return {**base, "status": status, "detail": detail}

    limits = run.limits
    if run.init_died:
        return result("sandbox_error", "the run's init process died unexpectedly")
    if run.forged:
        return result("error", f"the program wrote to the sandbox's report channel ({run.forged})")
    if run.proof:
        return result("passed", "the test ran to its end")
    if run.killed_for == "timeout":
        return result("timeout", f"wall-clock limit of {limits['timeout_s']:g} s exceeded")
    if run.killed_for == "output_limit":
        return result("output_limit", f"output exceeded {limits['max_output_bytes']} bytes")
    cpu = final.get("cpu_s", 0.0)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits["cpu_s"] - 0.05):
        return result("timeout", f"CPU-time limit of {limits['cpu_s']:g} s exceeded")
    if run.error and run.error[0] == "memory":
        return result("memory", f"out of memory (limit {limits['memory_mb']} MB): {run.error[1]}")
    if run.mode == "function" and run.failure:
        return result("failed", run.failure)
    if run.error:
        return result("error", f"{run.error[0]}: {run.error[1]}")
    if sig:
        hint = {signal.SIGSEGV: " (stack overflow?)", signal.SIGKILL: " (out of memory?)"}.get(sig, "")
        return result("error", f"killed by {_signal_name(sig)}{hint}")
    if run.mode == "function":
        if run.phase == "program":
            return result("error", f"the program exited (code {code}) before the tests ran")
        return result("error", f"the test did not run to its end (exit code {code})")
    if code != 0:
        return result("error", f"exited with code {code}")
    actual = run.out.decode("utf-8", "replace")
    expected = run.case["output"]
    if outputs_match(actual, expected, run.spec.get("float_tol")):
        return result("passed", "output matches")
    return result("failed", f"wrong output: expected {expected[:60]!r}, got {actual[:60]!r}")
