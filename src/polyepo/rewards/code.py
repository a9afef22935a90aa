"""Verifiable code rewards: run model-written Python against tests, isolated, in parallel.

```python
from polyepo.rewards.code import run_python_tests, run_python_tests_batch

r = run_python_tests("def add(a, b):\\n    return a + b\\n",
                     "def check(candidate):\\n    assert candidate(2, 3) == 5\\n", entry_point="add")
r.passed, r.status, r.wall_s          # True, 'passed', 0.01
```

Each call borrows a server from a process-wide pool (``sandbox.pool.shared_pool``) keyed by
the sandbox settings; servers start on first use and live until the process exits. See
docs/rewards.md for the threat model, the statuses and what is and is not covered.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from . import REWARDS, column
from .extract import EXTRACT_MODES, extract_program
from .sandbox import Job, Limits, SandboxBroken, SandboxConfig, SandboxResult, StdioCase, shared_pool
from .sandbox.protocol import STATUSES

log = logging.getLogger("polyepo.rewards.code")

__all__ = ["CodeTestsReward", "Job", "Limits", "SandboxConfig", "SandboxResult", "StdioCase", "extract_program",
           "run_python_tests", "run_python_tests_batch", "run_stdio_tests"]


def _limits(limits: Limits | None, timeout_s: float, memory_mb: int) -> Limits:
    return limits if limits is not None else Limits(timeout_s=timeout_s, memory_mb=memory_mb)


def run_python_tests(program: str, test: str, *, entry_point: str | None = None, timeout_s: float = 5.0,
                     memory_mb: int = 1024, strict_returns: bool = True, limits: Limits | None = None,
                     config: SandboxConfig | None = None, helpers: str | None = None) -> SandboxResult:
    """Run ``program``, then ``test`` against it, isolated, the test out of the program's reach; the verdict.

    The test runs in a process of its own, after ``helpers`` (the task's trusted code: its
    prompt's imports and helper functions); it calls the program's top-level callables through
    proxies that carry plain data only. ``result.passed`` is True only if the test ran to its
    end without an exception, proven by a nonce that only the test process receives, after the
    test finished. With ``entry_point`` (HumanEval's ``"add"``, leetcode's
    ``"Solution().twoSum"``) the test's ``check`` is then called with it. A value that is not
    plain data (an object whose ``__eq__`` is always True) ends the run as ``unserializable``;
    ``strict_returns`` is kept for compatibility and changes nothing. ``limits`` overrides
    ``timeout_s`` and ``memory_mb`` with a full set of limits.
    """
    job = Job(program, test=test, entry_point=entry_point, strict_returns=strict_returns, helpers=helpers)
    return shared_pool(config).run(job, _limits(limits, timeout_s, memory_mb))


def run_stdio_tests(program: str, cases: Iterable[StdioCase | tuple[str, str] | dict], *, timeout_s: float = 5.0,
                    memory_mb: int = 1024, float_tol: float | None = None, limits: Limits | None = None,
                    config: SandboxConfig | None = None) -> SandboxResult:
    """Run ``program`` once per case with the case's input on stdin; passed if every output matches.

    Outputs are compared line by line ignoring trailing whitespace (see
    :func:`~polyepo.rewards.sandbox.protocol.outputs_match`); ``float_tol`` also accepts
    numbers within that tolerance. ``timeout_s`` applies to each case. The first failing case
    stops the job (``result.failed_case``).
    """
    job = Job(program, cases=tuple(cases), float_tol=float_tol)  # type: ignore[arg-type]
    return shared_pool(config).run(job, _limits(limits, timeout_s, memory_mb))


def as_job(item: Job | Sequence | dict) -> Job:
    """A Job from a Job, a ``(program, test[, entry_point])`` tuple, or a dict with those keys (or ``cases``, ``helpers``)."""
    if isinstance(item, Job):
        return item
    if isinstance(item, dict):
        keys = {"program", "test", "entry_point", "cases", "strict_returns", "float_tol", "helpers"}
        unknown = set(item) - keys
        if unknown:
            raise ValueError(f"unknown job keys {sorted(unknown)}; valid: {sorted(keys)}")
        return Job(**item)
    if isinstance(item, (tuple, list)) and 2 <= len(item) <= 3:
        return Job(item[0], test=item[1], entry_point=item[2] if len(item) == 3 else None)
    raise TypeError(f"a job must be a Job, a (program, test[, entry_point]) tuple or a dict; got {item!r:.80}")


def run_python_tests_batch(jobs: Iterable[Job | Sequence | dict], *, timeout_s: float = 5.0, memory_mb: int = 1024,
                           workers: int | None = None, progress: bool = False, limits: Limits | None = None,
                           config: SandboxConfig | None = None) -> list[SandboxResult]:
    """Run many jobs in parallel (``workers`` servers, default: one per core); results in input order.

    Jobs are ``(program, test)`` or ``(program, test, entry_point)`` tuples, dicts, or
    :class:`Job` objects (which also express stdin/stdout cases). ``progress`` shows a rich
    progress bar.
    """
    batch = [as_job(j) for j in jobs]
    pool = shared_pool(config, workers)
    return pool.run_many(batch, _limits(limits, timeout_s, memory_mb), progress=progress)


def _cases(value: Any) -> tuple[StdioCase, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "inputs" in value:  # {"inputs": [...], "outputs": [...]}
        value = list(zip(value["inputs"], value["outputs"]))
    return tuple(StdioCase(**c) if isinstance(c, dict) else StdioCase(*c) for c in value)


class CodeTestsReward:
    """Reward function (TRL contract): 1.0 if the answer's program passes its row's tests, else 0.0.

    ``f(prompts, completions, **columns) -> list[float | None]``. Columns read per row:
    ``test`` (function asserts; with ``entry_point`` the runner calls ``check(entry_point)``),
    or ``test_cases`` (stdin/stdout: a list of ``{"input", "output"}``, or its JSON);
    ``code_prompt`` (code the answer continues or relies on, e.g. HumanEval's prompt; the test
    process also runs it, so the test's helpers are the task's, not the answer's).
    A row with neither test nor test_cases gets None (not applicable). An answer with no code
    gets 0.0 (counted as ``no_code``). A sandbox failure (after one retry) gets what
    ``on_sandbox_error`` says, is counted and logged, and if more than
    ``max_sandbox_error_rate`` of a call's runs fail that way the call raises SandboxBroken.
    After each call, :attr:`last_stats` holds the counts and timings (docs/rewards.md) and
    :attr:`last_results` the SandboxResult of each row (None where nothing ran).
    """

    __name__ = "code_tests"

    def __init__(self, *, timeout_s: float = 5.0, memory_mb: int = 1024, workers: int | None = None,
                 extract: str = "auto", strict_returns: bool = True, float_tol: float | None = None,
                 on_sandbox_error: str = "none", max_sandbox_error_rate: float = 0.25, isolation: str = "auto",
                 hidden_paths: Sequence[str] = (), readable_paths: Sequence[str] = (), progress: bool = False,
                 max_processes: int = 32, disk_mb: int = 64) -> None:
        if extract not in EXTRACT_MODES:
            raise ValueError(f"extract must be one of {', '.join(EXTRACT_MODES)}; got {extract!r}")
        if on_sandbox_error not in ("none", "zero", "raise"):
            raise ValueError(f"on_sandbox_error must be none, zero or raise; got {on_sandbox_error!r}")
        self.limits = Limits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes, disk_mb=disk_mb)
        self.config = SandboxConfig(isolation=isolation, hidden_paths=tuple(hidden_paths),
                                    readable_paths=tuple(readable_paths))
        self.workers, self.extract, self.strict_returns = workers, extract, strict_returns
        self.float_tol, self.progress = float_tol, progress
        self.on_sandbox_error, self.max_sandbox_error_rate = on_sandbox_error, max_sandbox_error_rate
        self.last_stats: dict[str, Any] = {}
        self.last_results: list[SandboxResult | None] = []

    def jobs(self, completions: Sequence, **columns: Any) -> list[Job | str | None]:
        """One Job per row; ``"no_code"`` where the answer has no program, None where not applicable."""
        n = len(completions)
        tests, cases = column(columns, "test", n), column(columns, "test_cases", n)
        entries, prompts = column(columns, "entry_point", n), column(columns, "code_prompt", n)
        out: list[Job | str | None] = []
        for completion, test, case, entry, code_prompt in zip(completions, tests, cases, entries, prompts):
            if test is None and case is None:
                out.append(None)
                continue
            program = extract_program(completion, entry_point=entry, code_prompt=code_prompt, mode=self.extract)
            if program is None:
                out.append("no_code")
            elif test is not None:
                out.append(Job(program, test=test, entry_point=entry, strict_returns=self.strict_returns,
                               helpers=code_prompt if isinstance(code_prompt, str) else None))
            else:
                out.append(Job(program, cases=_cases(case), float_tol=self.float_tol))
        return out

    def __call__(self, prompts: Sequence, completions: Sequence, **columns: Any) -> list[float | None]:
        start = time.perf_counter()
        jobs = self.jobs(completions, **columns)
        runnable = [j for j in jobs if isinstance(j, Job)]
        pool = shared_pool(self.config, self.workers)
        results = iter(pool.run_many(runnable, self.limits, progress=self.progress))
        self.last_results = [next(results) if isinstance(j, Job) else None for j in jobs]
        rewards = [self._value(j, r) for j, r in zip(jobs, self.last_results)]
        self.last_stats = self._stats(jobs, time.perf_counter() - start, pool.isolation if runnable else "")
        self._enforce_policy()
        return rewards

    def _value(self, job: Job | str | None, result: SandboxResult | None) -> float | None:
        if job is None:
            return None
        if result is None:
            return 0.0  # no code in the answer
        if result.status == "sandbox_error":
            return 0.0 if self.on_sandbox_error == "zero" else None
        return 1.0 if result.passed else 0.0

    def _stats(self, jobs: list, seconds: float, isolation: str) -> dict[str, Any]:
        counts = Counter(r.status for r in self.last_results if r is not None)
        ran = [r for r in self.last_results if r is not None]
        stats: dict[str, Any] = {status: counts.get(status, 0) for status in STATUSES}
        stats.update(
            rows=len(jobs), not_applicable=sum(j is None for j in jobs), no_code=sum(j == "no_code" for j in jobs),
            runs=len(ran), retried=sum(r.retries for r in ran), seconds=seconds,
            run_seconds_mean=sum(r.wall_s for r in ran) / len(ran) if ran else 0.0,
            run_seconds_max=max((r.wall_s for r in ran), default=0.0), isolation=isolation,
            degraded=ran[0].degraded if ran else "")
        applicable = len(jobs) - stats["not_applicable"]
        stats["pass_rate"] = counts.get("passed", 0) / applicable if applicable else 0.0
        return stats

    def _enforce_policy(self) -> None:
        errors, runs = self.last_stats["sandbox_error"], self.last_stats["runs"]
        if not errors:
            return
        log.error("code_tests: %d of %d runs hit a sandbox failure (policy %s)", errors, runs, self.on_sandbox_error)
        if self.on_sandbox_error == "raise" or errors > self.max_sandbox_error_rate * runs:
            first = next(r for r in self.last_results if r is not None and r.status == "sandbox_error")
            raise SandboxBroken(f"{errors} of {runs} runs hit a sandbox failure; first: {first.detail}")


@REWARDS.register("code_tests")
def code_tests(**options: Any) -> CodeTestsReward:
    """Run the answer's code against the row's tests in the sandbox (1.0 pass, 0.0 fail, None n/a)."""
    return CodeTestsReward(**options)
