"""One hostile program per test: the verdict, the time it took, and that nothing leaked to the host.

Each program pairs with the test ``check(f)`` asserting ``f() == 1``. A program that defines
``f`` correctly *and* attacks the sandbox must still not break out, and one that attacks the
proof of completion must not pass.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from _sandbox_helpers import assert_nothing_left
from polyepo.rewards.sandbox import Job, Limits, SandboxPool

TEST = "def check(candidate):\n    assert candidate() == 1\n"
SLACK_S = 4.0  # scheduling slack on a loaded 2-core machine


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1) as p:
        p.warm()
        yield p


def needs_namespaces(pool: SandboxPool) -> None:
    if pool.isolation == "rlimits":
        pytest.skip("needs namespace isolation (root or user namespaces); this machine only allows rlimits")


def run(pool, program, test=TEST, **limits):
    start = time.monotonic()
    result = pool.run(Job(program, test=test, entry_point="f"), Limits(**{"timeout_s": 2.0, **limits}))
    elapsed = time.monotonic() - start
    assert_nothing_left(pool)
    return result, elapsed


def test_infinite_loop_times_out(pool):
    r, t = run(pool, "def f():\n    return 1\nwhile True:\n    pass\n", timeout_s=1.0)
    assert r.status == "timeout" and not r.passed and "wall-clock" in r.detail
    assert 0.95 <= t < 1.0 + SLACK_S


def test_signal_ignoring_loop_is_killed(pool):
    program = ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):\n"
               "    signal.signal(s, signal.SIG_IGN)\ndef f():\n    return 1\nwhile True:\n    pass\n")
    r, t = run(pool, program, timeout_s=1.0)
    assert r.status == "timeout" and not r.passed
    assert t < 1.0 + SLACK_S


def test_cpu_limit_below_wall_limit(pool):
    r, t = run(pool, "def f():\n    return 1\nwhile True:\n    pass\n", timeout_s=10.0, cpu_s=1.0)
    assert r.status == "timeout" and "CPU" in r.detail  # RLIMIT_CPU: SIGXCPU at 1 s of CPU, SIGKILL at 2 s
    assert t < 10.0  # before the wall-clock limit (2 s of CPU take longer on a loaded machine)


def test_exit_zero_before_the_tests_is_not_a_pass(pool):
    r, t = run(pool, "import sys\ndef f():\n    return 1\nsys.exit(0)\n")
    assert r.status == "error" and not r.passed and "before the tests ran" in r.detail
    assert t < SLACK_S


def test_hard_exit_before_the_tests_is_not_a_pass(pool):
    r, t = run(pool, "import os\ndef f():\n    return 1\nos._exit(0)\n")
    assert r.status == "error" and r.exit_code == 0 and not r.passed
    assert t < SLACK_S


def test_exit_inside_the_tested_function_is_not_a_pass(pool):
    r, t = run(pool, "import os\ndef f():\n    os._exit(0)\n")
    assert r.status == "error" and not r.passed and "did not run to its end" in r.detail
    assert t < SLACK_S


def test_forged_success_output_is_not_a_pass(pool):
    r, t = run(pool, "import os, sys\nprint('All tests passed!')\nprint('passed', file=sys.stderr)\n"
                     "sys.stdout.flush()\nos._exit(0)\n")
    assert r.status == "error" and not r.passed and r.stdout == "All tests passed!\n"
    assert t < SLACK_S


def test_forged_completion_report_is_detected(pool):
    # the program's process holds no report channel: what it writes to its descriptors reaches
    # at most the test channel, where it is a protocol violation
    program = ("import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'K\\x00\\x00\\x00\\x10' + os.urandom(16))\n"
               "    except OSError:\n        pass\ndef f():\n    return 1\n")
    r, t = run(pool, program)
    assert r.status == "error" and not r.passed and "test channel" in r.detail
    assert t < SLACK_S


def test_memory_bomb_hits_the_limit(pool):
    r, t = run(pool, "x = bytearray(8 * 1024 ** 3)\ndef f():\n    return 1\n", memory_mb=256)
    assert r.status == "memory" and not r.passed
    assert t < SLACK_S


def test_gradual_memory_growth_hits_the_limit(pool):
    r, t = run(pool, "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 ** 2))\n", memory_mb=256)
    assert r.status == "memory" and "MemoryError" in r.detail
    assert t < SLACK_S


def test_fork_burst_is_capped(pool):
    program = "import os\nfor _ in range(10000):\n    os.fork()\ndef f():\n    return 1\n"
    r, t = run(pool, program, max_processes=16, timeout_s=3.0)
    assert not r.passed and r.status in ("error", "timeout")
    assert t < 3.0 + SLACK_S


def test_daemonised_orphan_is_gone_when_the_call_returns(pool):
    program = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        time.sleep(60)\n    os._exit(0)\nos.wait()\ndef f():\n    return 1\n")
    r, t = run(pool, program)  # run() asserts no process survived
    assert r.passed  # the program is correct; its daemon was killed before the test and after it
    assert t < SLACK_S


def test_a_leftover_thread_cannot_reach_the_test(pool):
    # a thread that keeps patching builtins, math and the caller's frames during the test
    tamper = ("import threading, builtins, math, sys\ndef tamper():\n    while True:\n"
              "        builtins.abs = lambda x: 0\n        math.isclose = lambda *a, **k: True\n"
              "        for frame in sys._current_frames().values():\n            frame.f_globals['check'] = lambda c: None\n"
              "threading.Thread(target=tamper, daemon=True).start()\n")
    test = "import math\ndef check(candidate):\n    assert abs(candidate() - 1) < 1e-9 and math.isclose(candidate(), 1)\n"
    r, t = run(pool, tamper + "def f():\n    return 5\n", test=test)
    assert r.status == "failed" and not r.passed
    r, t = run(pool, tamper + "def f():\n    return 1\n", test=test)
    assert r.passed, r.detail  # threads are the program's business; they cannot touch the test
    assert t < SLACK_S


def test_no_network_even_to_a_loopback_port_the_host_opens(pool):
    needs_namespaces(pool)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    program = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    reached = True\n"
               f"except OSError as e:\n    reached = False\n    print(e)\ndef f():\n    return 0 if reached else 1\n")
    try:
        r, t = run(pool, program)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()
    assert r.passed, r.detail
    assert t < SLACK_S


def test_writes_outside_the_work_dir_fail_and_the_work_dir_vanishes(pool, tmp_path):
    needs_namespaces(pool)
    targets = [str(tmp_path / "escape.txt"), os.path.join(os.getcwd(), f"escape-{uuid.uuid4().hex}.txt"),
               f"/tmp/escape-{uuid.uuid4().hex}.txt", "/etc/escape.txt"]
    program = (f"import os\nwritten = []\nfor p in {targets!r}:\n    try:\n        open(p, 'w').write('x')\n"
               f"        written.append(p)\n    except OSError:\n        pass\nopen('inside.txt', 'w').write('ok')\n"
               f"assert open(os.path.join(os.getcwd(), 'inside.txt')).read() == 'ok'\n"
               f"def f():\n    return 1 if not [w for w in written if not w.startswith('/tmp/')] else 0\n")
    r, t = run(pool, program)
    assert r.passed, r.detail  # only the sandbox's own /tmp (its work dir) was writable
    for target in targets:
        assert not os.path.exists(target)
    assert t < SLACK_S


def test_environment_secret_does_not_reach_the_program(pool, monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("POLYEPO_TEST_SECRET", secret)
    program = (f"import os\nfound = '{secret[:7]}' + '{secret[7:]}' in str(dict(os.environ))\n"
               f"for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n    try:\n"
               f"        found |= '{secret[:7]}' + '{secret[7:]}' in open(f'/proc/{{pid}}/environ', errors='replace').read()\n"
               f"    except OSError:\n        pass\nprint(sorted(os.environ))\ndef f():\n    return 0 if found else 1\n")
    with SandboxPool(workers=1) as fresh:  # servers started after the secret was set
        r = fresh.run(Job(program, test=TEST, entry_point="f"))
        assert_nothing_left(fresh)
    assert r.passed, r.detail
    assert secret not in r.stdout and "POLYEPO_TEST_SECRET" not in r.stdout


def test_huge_output_is_capped(pool):
    r, t = run(pool, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", max_output_bytes=1 << 20)
    assert r.status == "output_limit" and not r.passed
    assert len(r.stdout) <= Limits().keep_chars
    assert t < SLACK_S


def test_deep_recursion_does_not_pass_or_hang(pool):
    program = "import sys\nsys.setrecursionlimit(10 ** 8)\ndef g(n):\n    return g(n + 1) + 1\ng(0)\ndef f():\n    return 1\n"
    r, t = run(pool, program, timeout_s=2.0, memory_mb=256)
    assert not r.passed and r.status in ("error", "memory", "timeout")
    assert t < 2.0 + SLACK_S


def test_stdin_is_closed(pool):
    r, t = run(pool, "x = input()\ndef f():\n    return 1\n")
    assert r.status == "error" and "EOFError" in r.detail
    assert t < SLACK_S


def test_object_equal_to_everything_fails(pool):
    r, t = run(pool, "class Yes:\n    def __eq__(self, other):\n        return True\ndef f():\n    return Yes()\n")
    assert r.status == "unserializable" and "Yes" in r.detail and not r.passed
    assert t < SLACK_S


def test_patched_builtins_are_restored_before_the_test(pool):
    test = "def check(candidate):\n    assert abs(candidate() - 1) < 1e-9\n"
    r, t = run(pool, "import builtins\nbuiltins.abs = lambda x: 0\ndef f():\n    return 5\n", test=test)
    assert r.status == "failed" and not r.passed
    assert t < SLACK_S


def test_audit_hooks_see_nothing_of_the_test(pool):
    # in one shared interpreter an audit hook would see the test's compile and exec events
    test = "SECRET_MARKER = 1\ndef check(candidate):\n    assert candidate() == 1\n"
    program = ("import sys\nseen = []\nsys.addaudithook(lambda event, args: seen.append(repr(args)[:10000]))\n"
               "def f():\n    return 0 if any('SECRET_MARKER' in a for a in seen) else 1\n")
    r, t = run(pool, program, test=test)
    assert r.passed, r.detail
    assert t < SLACK_S


def test_program_cannot_signal_its_supervisors_or_see_host_processes(pool):
    needs_namespaces(pool)
    program = ("import os, signal\nerrors = 0\nfor pid in (os.getppid(), 1):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
               "    except OSError:\n        errors += 1\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
               "def f():\n    return 1 if errors == 2 and len(pids) <= 3 else 0\n")
    r, t = run(pool, program)
    assert r.passed, r.detail
    assert t < SLACK_S


def test_the_sandbox_source_is_hidden_from_programs(pool):
    needs_namespaces(pool)
    import polyepo

    package = os.path.dirname(polyepo.__file__)
    program = f"import os\nseen = os.listdir({package!r})\ndef f():\n    return 1 if seen == [] else 0\n"
    r, t = run(pool, program)
    assert r.passed, r.detail  # the protocol's code is not there to be read
    assert t < SLACK_S


def test_patched_standard_modules_and_import_hooks_are_restored(pool):
    test = "import math\ndef check(candidate):\n    assert math.isclose(candidate(), 1.0)\n"
    program = ("import math, sys, types\nmath.isclose = lambda *a, **k: True\nfake = types.ModuleType('math')\n"
               "fake.isclose = lambda *a, **k: True\nclass Finder:\n    def find_spec(self, name, path=None, target=None):\n"
               "        return None\nsys.meta_path.insert(0, Finder())\nsys.modules['math'] = fake\ndef f():\n    return 5.0\n")
    r, t = run(pool, program, test=test)
    assert r.status == "failed" and "math.isclose" in r.detail
    assert t < SLACK_S
