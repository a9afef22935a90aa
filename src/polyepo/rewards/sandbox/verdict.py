"""Turn what the supervisor observed during a run into a status and a one-line detail.

Order matters: a broken sandbox first, then a broken report protocol, then the proof (the
only way to ``passed`` in function mode), then the limits, then what the test process
reported. Only the test process has a report channel; the program's process can only answer
calls, so nothing the program does can turn into a report. Reasons the program's process
gave for its own failure (a syntax error, an exception at top level) only refine *why* a run
did not pass.
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


def _exit(raw: Any) -> tuple[int | None, int | None]:
    """(exit code, signal) of a raw wait status."""
    if not isinstance(raw, int) or raw < 0:
        return None, None
    code = os.waitstatus_to_exitcode(raw)
    return (code, None) if code >= 0 else (None, -code)


def verdict(run: Any) -> dict:
    """Status, detail, exit code and signal of one run (``run`` is a supervise._Run)."""
    final = run.final or {}
    code, sig = _exit(final.get("status"))
    pcode, psig = _exit(final.get("program_status"))
    if run.mode == "function" and (pcode is not None or psig is not None):
        code, sig = pcode, psig  # what the user cares about is the program's process
    base = {"exit_code": code, "signal": _signal_name(sig) if sig else None}

    def result(status: str, detail: str) -> dict:
        return {**base, "status": status, "detail": detail}

    limits = run.limits
    if run.init_died:
        return result("sandbox_error", "the run's init process died unexpectedly")
    if run.forged:
        return result("error", f"the run broke the report protocol ({run.forged})")
    if run.proof:
        return result("passed", "the test ran to its end")
    if run.killed_for == "timeout":
        return result("timeout", f"wall-clock limit of {limits['timeout_s']:g} s exceeded")
    if run.killed_for == "output_limit":
        return result("output_limit", f"output exceeded {limits['max_output_bytes']} bytes")
    cpu = final.get("cpu_s", 0.0)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits["cpu_s"] - 0.05):
        return result("timeout", f"CPU-time limit of {limits['cpu_s']:g} s exceeded")
    if run.oom_killed:
        return result("memory", f"out of memory: the job's processes together exceeded {limits['memory_mb']} MB")
    kind, text = run.error or ("", "")
    if kind == "unserializable":
        return result("unserializable", text)
    if kind == "memory":
        return result("memory", f"out of memory (limit {limits['memory_mb']} MB): {text}")
    if run.mode == "function" and run.failure:
        return result("failed", run.failure)
    if kind == "gone":
        how = f"killed by {_signal_name(sig)}" if sig else f"exited (code {code})"
        return result("error", f"the test did not run to its end: the program's process {how} during a call")
    if kind == "exit" and run.mode == "function":
        how = f"exited (code {code})" if sig is None else f"was killed by {_signal_name(sig)}"
        return result("error", f"the program {how} before the tests ran" + (f": {text}" if "SystemExit" in text else ""))
    if kind == "protocol":
        return result("error", text)
    if run.error:
        return result("error", f"{kind}: {text}")
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
