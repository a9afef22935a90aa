"""What a sandbox run is asked to do (Job, Limits) and what it answers (SandboxResult)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .protocol import STATUSES


@dataclass(frozen=True)
class StdioCase:
    """One stdin/stdout case: the program reads ``input`` and must print ``output``."""

    input: str
    output: str


@dataclass(frozen=True)
class Job:
    """A program and how to test it: function asserts (``test``) or stdin/stdout ``cases``.

    Function style (HumanEval, leetcode2k, plain asserts): ``test`` runs in a test process of
    its own, never in the program's interpreter, after ``helpers`` (the task's trusted code:
    its prompt's imports and helper functions/classes, e.g. HumanEval's prompt or LeetCode's
    ``ListNode``), and must run to its end. The program's top-level callables reach the test as
    proxies that call into the program's process with plain data only; with ``entry_point`` (a
    name or an expression such as ``"Solution().twoSum"``) the test's ``check(<entry_point>)``
    is then called. Stdin/stdout style (LiveCodeBench): each case is a fresh run of the program
    in a fresh work directory; all must match.
    """

    program: str
    test: str | None = None
    entry_point: str | None = None
    cases: tuple[StdioCase, ...] | None = None
    strict_returns: bool = True
    """Kept for compatibility: only plain data crosses between the processes, whatever it says."""
    float_tol: float | None = None
    helpers: str | None = None
    """Trusted code the test process runs before the test (its largest compiling prefix)."""

    def __post_init__(self) -> None:
        if not isinstance(self.program, str):
            raise TypeError(f"program must be a str, got {type(self.program).__name__}")
        if (self.test is None) == (self.cases is None):
            raise ValueError("a job needs exactly one of test (function asserts) or cases (stdin/stdout)")
        if self.cases is not None:
            cases = tuple(c if isinstance(c, StdioCase) else StdioCase(**c) if isinstance(c, dict) else StdioCase(*c)
                          for c in self.cases)
            if not cases:
                raise ValueError("cases must not be empty")
            object.__setattr__(self, "cases", cases)
        if self.helpers is not None and not isinstance(self.helpers, str):
            raise TypeError(f"helpers must be a str or None, got {type(self.helpers).__name__}")
        if self.helpers is not None and self.cases is not None:
            raise ValueError("helpers belong to function tests (test=...), not to stdin/stdout cases")
        if self.float_tol is not None and not (self.float_tol >= 0):
            raise ValueError(f"float_tol must be >= 0 or None, got {self.float_tol}")

    @property
    def mode(self) -> str:
        return "function" if self.cases is None else "stdio"

    def messages(self, limits: Limits) -> tuple[dict, dict]:
        """The two frames sent to the server: (program + limits, test secrets)."""
        first = {"mode": self.mode, "program": self.program, "limits": limits.resolved()}
        second = {"test": self.test, "entry_point": self.entry_point,
                  "float_tol": self.float_tol, "helpers": self.helpers,
                  "cases": None if self.cases is None else [asdict(c) for c in self.cases]}
        return first, second


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits (each stdin/stdout case is one run)."""

    timeout_s: float = 5.0
    """Wall-clock limit of one run, from fork to exit (the test phase included)."""
    cpu_s: float | None = None
    """CPU-time limit per process (RLIMIT_CPU); None: equal to timeout_s."""
    memory_mb: int = 1024
    """Memory of the whole job (cgroup: every process, shared memory, memfd and tmpfs files
    included) and address space of each process (RLIMIT_AS, the interpreter's ~30 MB included)."""
    max_processes: int = 32
    """Processes and threads of the program: per job (cgroup pids) and per uid (RLIMIT_NPROC)."""
    max_output_bytes: int = 1 << 20
    """stdout + stderr; a run that prints more is killed (status output_limit)."""
    disk_mb: int = 64
    """Size of the private work directory (tmpfs) and the largest file (RLIMIT_FSIZE)."""
    keep_chars: int = 2000
    """How much of stdout/stderr the result keeps for debugging."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "max_processes", "max_output_bytes", "disk_mb"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"cpu_s must be a positive number or None, got {self.cpu_s!r}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (the interpreter alone maps ~30), got {self.memory_mb}")

    def resolved(self) -> dict:
        out = asdict(self)
        out["cpu_s"] = self.timeout_s if self.cpu_s is None else self.cpu_s
        return out


@dataclass
class SandboxResult:
    """The verdict of one job.

    ``status`` is one of :data:`STATUSES`; ``passed`` is True only for ``"passed"``, which in
    function mode requires the nonce that the sandbox sends after the test ran to its end.
    """

    status: str
    detail: str = ""
    stdout: str = ""
    stderr: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    exit_code: int | None = None
    signal: str | None = None
    isolation: str = ""
    degraded: str = ""
    """Kernel mechanisms missing at this isolation level, with why ("" when none is missing)."""
    retries: int = 0
    cases_total: int = 0
    cases_run: int = 0
    cases_passed: int = 0
    failed_case: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(STATUSES)}")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @classmethod
    def from_wire(cls, data: dict, isolation: str, retries: int, degraded: str = "") -> SandboxResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("extra", "degraded")}
        return cls(**known, isolation=isolation, retries=retries, degraded=degraded)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}
