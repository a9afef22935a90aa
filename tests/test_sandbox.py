"""The sandbox's ordinary behaviour: verdicts, stdin/stdout tests, batches, isolation levels, failures."""

from __future__ import annotations

import glob
import os
import tempfile
import warnings

import pytest

from _sandbox_helpers import SupervisorKiller, assert_nothing_left
from polyepo.rewards.code import (
    as_job,
    run_python_tests,
    run_python_tests_batch,
    run_stdio_tests,
)
from polyepo.rewards.sandbox import Job, Limits, SandboxBroken, SandboxConfig, SandboxPool, outputs_match
from polyepo.rewards.sandbox import pool as pool_module

ADD = "def add(a, b):\n    return a + b\n"
ADD_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


def test_pass_and_fail_with_the_failing_line():
    ok = run_python_tests(ADD, ADD_TEST, entry_point="add")
    assert ok.passed and ok.status == "passed" and ok.wall_s > 0 and ok.isolation
    bad = run_python_tests("def add(a, b):\n    return a - b\n", ADD_TEST, entry_point="add")
    assert bad.status == "failed" and "assert candidate(2, 3) == 5" in bad.detail
    assert "AssertionError" in bad.stderr


def test_test_code_without_entry_point_runs_as_written():
    assert run_python_tests(ADD, "assert add(1, 1) == 2\n").passed
    assert run_python_tests(ADD, "assert add(1, 1) == 3\n").status == "failed"
    missing = run_python_tests(ADD, "x = 1\n", entry_point="add")  # no check() in the test
    assert missing.status == "failed" and "check" in missing.detail


def test_entry_point_expression_and_program_errors():
    program = "class Solution:\n    def twoSum(self, a, b):\n        return [a, b]\n"
    test = "def check(candidate):\n    assert candidate(1, 2) == [1, 2]\n"
    assert run_python_tests(program, test, entry_point="Solution().twoSum").passed
    syntax = run_python_tests("def add(a, b) return a\n", ADD_TEST, entry_point="add")
    assert syntax.status == "error" and syntax.detail.startswith("syntax")
    crash = run_python_tests("raise ValueError('boom')\n", ADD_TEST, entry_point="add")
    assert crash.status == "error" and "ValueError: boom" in crash.detail


def test_program_output_and_exceptions_inside_the_test():
    r = run_python_tests("print('hello')\ndef add(a, b):\n    raise KeyError('k')\n", ADD_TEST, entry_point="add")
    assert r.status == "failed" and "KeyError" in r.detail and r.stdout == "hello\n"


def test_only_plain_data_comes_back_whatever_strict_returns_says():
    program = "class Box(int):\n    pass\ndef add(a, b):\n    return Box(a + b)\n"
    for strict in (True, False):
        r = run_python_tests(program, ADD_TEST, entry_point="add", strict_returns=strict)
        assert r.status == "unserializable" and "Box" in r.detail and not r.passed


def test_stdio_cases_whitespace_and_float_tolerance():
    program = "n = int(input())\nprint(n * 2, '  ')\nprint()\n"
    assert run_stdio_tests(program, [("3\n", "6\n"), ("5", "10")]).passed
    wrong = run_stdio_tests(program, [("3\n", "6\n"), ("5", "11"), ("7", "14")])
    assert wrong.status == "failed" and wrong.failed_case == 1 and wrong.cases_run == 2 and wrong.cases_passed == 1
    pi = "print(3.14159)\n"
    assert run_stdio_tests(pi, [("", "3.1416")], float_tol=1e-3).passed
    assert run_stdio_tests(pi, [("", "3.1416")]).status == "failed"


def test_stdio_exit_codes_and_large_input():
    assert run_stdio_tests("import sys\nprint('ok')\nsys.exit(0)\n", [("", "ok")]).passed
    r = run_stdio_tests("import sys\nprint('ok')\nsys.exit(3)\n", [("", "ok")])
    assert r.status == "error" and r.exit_code == 3
    big = "".join(f"{i}\n" for i in range(200_000))
    program = "import sys\nprint(sum(int(x) for x in sys.stdin.read().split()))\n"
    assert run_stdio_tests(program, [(big, str(sum(range(200_000))))]).passed


@pytest.mark.parametrize("actual,expected,tol,match", [
    ("1 2\n3\n", "1 2\n3", None, True),
    ("1 2  \r\n3\n\n\n", "1 2\n3\n", None, True),
    (" 1 2\n", "1 2\n", None, False),  # leading whitespace matters
    ("1\n\n2\n", "1\n2\n", None, False),  # blank lines inside matter
    ("0.3333333\n", "0.333333", 1e-6, True),
    ("0.34\n", "0.333333", 1e-6, False),
    ("nan\n", "nan", 1e-6, True),  # equal as text
    ("yes 1.0\n", "yes 1", 1e-9, True),
    ("no 1.0\n", "yes 1", 1e-9, False),
    ("1000000000\n", "1000000007", 1e-6, False),  # integer tokens are exact, whatever the tolerance
    (f"{2 ** 53}\n", str(2 ** 53 + 1), 0.0, False),  # ... beyond float precision too
    ("0.30000000000000004\n", "0.3", 1e-9, True),
    ("7.0\n", "7", 1e-9, True),  # the same number
    ("0.30001\n", "0.3", 1e-9, False),
])
def test_outputs_match(actual, expected, tol, match):
    assert outputs_match(actual, expected, tol) is match


def test_batch_keeps_input_order_and_mixes_styles(pool):
    jobs = [Job(ADD, test=ADD_TEST, entry_point="add"),
            Job("def add(a, b):\n    return 0\n", test=ADD_TEST, entry_point="add"),
            Job("print(input()[::-1])\n", cases=[("abc", "cba")]),
            Job("while True:\n    pass\n", test=ADD_TEST)] * 3
    results = pool.run_many(jobs, Limits(timeout_s=1.0), progress=True)
    assert [r.status for r in results] == ["passed", "failed", "passed", "timeout"] * 3
    assert_nothing_left(pool)


def test_batch_function_accepts_tuples_and_dicts():
    results = run_python_tests_batch([(ADD, ADD_TEST, "add"), {"program": ADD, "test": "assert add(1, 2) == 4"},
                                      (ADD, "assert add(1, 2) == 3")], workers=2)
    assert [r.passed for r in results] == [True, False, True]
    with pytest.raises(ValueError, match="unknown job keys"):
        as_job({"program": ADD, "tests": ADD_TEST})
    with pytest.raises(TypeError, match="a job must be"):
        as_job(ADD)


def test_bad_jobs_and_limits_are_refused():
    with pytest.raises(ValueError, match="exactly one of test"):
        Job(ADD)
    with pytest.raises(ValueError, match="cases must not be empty"):
        Job(ADD, cases=[])
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        Limits(timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb must be at least 64"):
        Limits(memory_mb=16)
    with pytest.raises(ValueError, match="isolation must be one of auto, full, userns, rlimits"):
        SandboxConfig(isolation="docker")


@pytest.mark.parametrize("level", ["userns", "rlimits"])
def test_weaker_isolation_levels_run_and_say_so(level, monkeypatch):
    if level == "userns" and not os.path.exists("/proc/self/ns/user"):
        pytest.skip("no user namespaces")
    monkeypatch.setattr(pool_module, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SandboxPool(SandboxConfig(isolation=level), workers=1) as p:
            try:
                assert p.isolation == level
            except SandboxBroken as e:
                pytest.skip(f"{level} is not available here: {e}")
            ok = p.run(Job(ADD, test=ADD_TEST, entry_point="add"))
            loop = p.run(Job("def add(a, b):\n    return a + b\nwhile True:\n    pass\n", test=ADD_TEST), Limits(timeout_s=1))
            assert_nothing_left(p)
            servers = p.server_pids()
    assert ok.passed and ok.isolation == level and loop.status == "timeout"
    tmp = tempfile.gettempdir()  # this pool's work and root dirs are gone (other test runs' are not looked at)
    assert not [d for pid in servers for d in glob.glob(os.path.join(tmp, f"polyepo-run-*-s{pid}-*"))]
    assert not glob.glob(os.path.join(tmp, f"polyepo-sandbox-root-{os.getpid()}-*"))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and f"isolation level {level!r}" in messages[0] and "Not covered" in messages[0]


def test_a_sandbox_failure_is_retried_once():
    with SandboxPool(workers=1) as p:
        killer = SupervisorKiller(p, times=1)
        killer.start()
        r = p.run(Job("import time\ntime.sleep(1.0)\n" + ADD, test=ADD_TEST, entry_point="add"))
        killer.stop.set()
    assert killer.killed == 1
    assert r.passed and r.retries == 1
    assert p.counters["retries"] == 1 and p.counters["sandbox_errors"] == 0


def test_a_repeated_sandbox_failure_is_a_sandbox_error_not_a_fail():
    with SandboxPool(workers=1) as p:
        killer = SupervisorKiller(p, times=2)
        killer.start()
        r = p.run(Job("import time\ntime.sleep(1.0)\n" + ADD, test=ADD_TEST, entry_point="add"))
        killer.stop.set()
        after = p.run(Job(ADD, test=ADD_TEST, entry_point="add"))  # the pool recovers
    assert r.status == "sandbox_error" and not r.passed and r.retries == 1
    assert "supervisor died" in r.detail
    assert p.counters["sandbox_errors"] == 1 and after.passed


def test_a_server_that_cannot_start_raises():
    with SandboxPool(SandboxConfig(python="/nonexistent/python"), workers=1) as p:
        with pytest.raises(SandboxBroken, match="no sandbox isolation level could start"):
            p.run(Job(ADD, test=ADD_TEST, entry_point="add"))
