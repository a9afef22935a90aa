"""Resources beyond one process and one job: IPC objects, keys, shared memory, CPU, namespaces.

Each hostile program is *correct* (its ``f`` returns what the test wants) and attacks the host
or the next job on the same server; the tests assert the verdict, the time bound, that
nothing of the job is left on the host, and, for cross-job attacks, that a job run afterwards
on the same server sees nothing. Needs isolation ``full`` (root) for the kernel mechanisms;
skipped where they are missing.
"""

from __future__ import annotations

import platform
import time

import pytest

from _sandbox_helpers import assert_nothing_left, host_ipc_count
from polyepo.rewards.code import CodeTestsReward
from polyepo.rewards.sandbox import Job, Limits, SandboxPool

SLACK_S = 4.0
TEST = "def check(candidate):\n    assert candidate() == 1\n"
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
KEY_CALLS = {"x86_64": (248, 249), "aarch64": (217, 218)}  # add_key, request_key


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1) as p:
        if p.isolation != "full" or p.degraded:
            pytest.skip(f"needs isolation 'full' with cgroups and seccomp; here: {p.isolation}, missing {p.degraded}")
        yield p


def run(pool, program, **limits):
    start = time.monotonic()
    result = pool.run(Job(program, test=TEST, entry_point="f"), Limits(**{"timeout_s": 5.0, **limits}))
    elapsed = time.monotonic() - start
    assert_nothing_left(pool)
    assert elapsed < limits.get("timeout_s", 5.0) + SLACK_S
    return result


def shmem_mb() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Shmem:")) / 1024


def shmem_back_to(baseline: float, slack_mb: float = 32) -> bool:
    """Host shared memory back near ``baseline`` (the kernel frees a dead IPC namespace's
    segments from a work queue, so allow it a moment)."""
    deadline = time.monotonic() + 3.0
    while shmem_mb() >= baseline + slack_mb and time.monotonic() < deadline:
        time.sleep(0.02)
    return shmem_mb() < baseline + slack_mb


SYSV_SHM = LIBC + """libc.shmat.restype = ctypes.c_void_p
for i in range({segments}):
    shmid = libc.shmget(0x5eed0 + i, {mb} << 20, 0o1666)
    addr = libc.shmat(shmid, None, 0)
    ctypes.memset(addr, 1, {mb} << 20)
    libc.shmdt(ctypes.c_void_p(addr))
def f():
    return 1
"""
SEES_NO_SHM = LIBC + "def f():\n    return 1 if libc.shmget(0x5eed0, 0, 0) == -1 else 0\n"


def test_system_v_shared_memory_dies_with_the_job(pool):
    ipc, shm = host_ipc_count(), shmem_mb()
    assert run(pool, SYSV_SHM.format(segments=1, mb=64), memory_mb=512).passed
    assert host_ipc_count() == ipc and shmem_back_to(shm)  # nothing stayed on the host
    assert run(pool, SEES_NO_SHM).passed  # nor is it there for the next job on the same server


def test_shared_memory_counts_against_the_job_memory_limit(pool):
    shm = shmem_mb()
    r = run(pool, SYSV_SHM.format(segments=10, mb=100), memory_mb=256)  # 1 GB in segments no process maps
    assert r.status == "memory" and not r.passed, r.detail
    assert shmem_back_to(shm)


@pytest.mark.parametrize("hold", [  # pieces under the file-size limit, 2 GB together
    "fds = [os.memfd_create('x') for _ in range(32)]\nfor fd in fds:\n    os.posix_fallocate(fd, 0, 64 << 20)\n",
    "with open('/tmp/big', 'wb') as fh:\n    fh.truncate(0)\n    for _ in range(400):\n        fh.write(b'x' * (1 << 20))\n",
])
def test_memfd_and_tmpfs_pages_count_against_the_job_memory_limit(pool, hold):
    program = "import os\ntry:\n" + "".join("    " + line + "\n" for line in hold.splitlines()) + (
        "    print('held')\nexcept OSError as e:\n    print('refused', e)\ndef f():\n    return 1\n")
    shm = shmem_mb()
    r = run(pool, program, memory_mb=256, disk_mb=1024)
    assert "held" not in r.stdout and r.status in ("passed", "memory"), (r.status, r.stdout)
    assert shmem_back_to(shm)


def test_message_queues_and_kernel_keys_do_not_reach_the_next_job(pool):
    machine = platform.machine()
    if machine not in KEY_CALLS:
        pytest.skip(f"key system call numbers unknown for {machine}")
    add_key, request_key = KEY_CALLS[machine]
    leave = LIBC + (f"q = libc.msgget(0x5eed1, 0o1666)\nmsg = ctypes.create_string_buffer(b'\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00hi')\n"
                    f"libc.msgsnd(q, msg, 2, 0)\nkey = libc.syscall({add_key}, b'user', b'polyepo-leak', b'secret', 6, -4)\n"
                    f"print('key', key, ctypes.get_errno())\ndef f():\n    return 1\n")
    find = LIBC + (f"q = libc.msgget(0x5eed1, 0)\nkey = libc.syscall({request_key}, b'user', b'polyepo-leak', None, 0)\n"
                   f"def f():\n    return 1 if q == -1 and key == -1 else 0\n")
    first = run(pool, leave)
    assert first.passed and "key -1 1" in first.stdout  # add_key refused with EPERM
    assert run(pool, find).passed


def test_user_namespaces_netlink_and_other_processes_are_refused(pool):
    program = LIBC + (
        "refused = []\nrefused.append(libc.unshare(0x10000000) == -1)  # CLONE_NEWUSER\n"
        "refused.append(libc.unshare(0x40000000) == -1)  # CLONE_NEWNET\n"
        "import socket\ntry:\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)\n    refused.append(False)\n"
        "except OSError:\n    refused.append(True)\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "    for path in (f'/proc/{pid}/mem', f'/proc/{pid}/environ', f'/proc/{pid}/fd/3'):\n"
        "        try:\n            open(path, 'rb').read(1)\n            refused.append(False)\n"
        "        except OSError:\n            refused.append(True)\n"
        "refused.append(libc.ptrace(16, 1, None, None) == -1)  # PTRACE_ATTACH\n"
        "print(refused)\ndef f():\n    return 1 if all(refused) else 0\n")
    r = run(pool, program)
    assert r.passed, (r.detail, r.stdout)


def test_busy_processes_in_their_own_sessions_do_not_starve_a_neighbour():
    hog = ("import os, time\nfor _ in range(28):\n    if os.fork() == 0:\n        os.setsid()\n        while True:\n"
           "            pass\ndef f():\n    time.sleep(7)\n    return 1\n")
    honest = "def f():\n    n = 0\n    for i in range(30_000_000):\n        n += i\n    return 1\n"  # ~1 s of CPU
    with SandboxPool(workers=2) as p:
        if p.isolation != "full" or "cgroup cpu" in p.degraded or "cgroups" in p.degraded:
            pytest.skip("needs per-job cpu cgroups")
        p.warm()
        hogged, neighbour = p.run_many([Job(hog, test=TEST, entry_point="f"), Job(honest, test=TEST, entry_point="f")],
                                       Limits(timeout_s=9.0))
        assert_nothing_left(p)
    # an equal share of the CPU, not 1/29 of it: ~1-3 s here, ~8 s without per-job cgroups
    assert neighbour.passed and neighbour.wall_s < 6.0, (neighbour.detail, neighbour.wall_s)
    assert not hogged.passed or hogged.wall_s >= 7.0  # the hog itself may run out of time


def test_a_batch_of_attackers_and_observers_on_one_server():
    attacker = LIBC + ("libc.shmat.restype = ctypes.c_void_p\nlibc.shmget(0x5eed2, 1 << 20, 0o1666)\n"
                       "libc.msgget(0x5eed3, 0o1666)\nopen('/tmp/left-behind', 'w').write('x')\n"
                       "if os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\ndef f():\n    return 1\n")
    observer = LIBC + ("seen = [libc.shmget(0x5eed2, 0, 0) != -1, libc.msgget(0x5eed3, 0) != -1,\n"
                       "        os.path.exists('/tmp/left-behind'), len([p for p in os.listdir('/proc') if p.isdigit()]) > 3]\n"
                       "print(seen)\ndef f():\n    return 0 if any(seen) else 1\n")
    with SandboxPool(workers=1) as p:
        if p.isolation != "full":
            pytest.skip("needs isolation 'full'")
        results = p.run_many([Job(prog, test=TEST, entry_point="f") for prog in [attacker, observer] * 3])
        assert_nothing_left(p)
    assert all(r.passed for r in results), [(r.status, r.stdout) for r in results]


def test_unserializable_values_are_counted_by_the_reward():
    reward = CodeTestsReward(timeout_s=5)
    completions = ["```python\ndef f():\n    return 1\n```",
                   "```python\ndef f():\n    return (x for x in [1])\n```",
                   "```python\nclass Yes:\n    def __eq__(self, o):\n        return True\ndef f():\n    return Yes()\n```"]
    rewards = reward(["p"] * 3, completions, test=[TEST] * 3, entry_point=["f"] * 3)
    assert rewards == [1.0, 0.0, 0.0]
    assert reward.last_stats["unserializable"] == 2 and reward.last_stats["passed"] == 1


def test_each_stdio_case_starts_in_an_empty_work_directory():
    from polyepo.rewards.code import run_stdio_tests

    program = ("import os\nleft = os.listdir('.')\nopen('state.txt', 'w').write('x')\n"
               "print('fresh' if not left else 'seen ' + ' '.join(left))\n")
    r = run_stdio_tests(program, [("", "fresh")] * 3)
    assert r.passed and r.cases_passed == 3, r.detail


def test_a_correct_program_that_forked_passes_whatever_its_children_do(pool):
    program = ("import os, time\nfor _ in range(12):\n    if os.fork() == 0:\n        os.setsid()\n"
               "        time.sleep(30)\n        os._exit(0)\ndef f():\n    return 1\n")
    r = run(pool, program)
    assert r.passed, r.detail  # no leftover check stands between a correct program and its pass


def test_what_a_killed_pool_leaves_is_removed_by_the_next_one():
    import glob
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    from polyepo.rewards.sandbox import pool as pool_module
    from polyepo.rewards.sandbox.cgroups import discover

    script = ("import sys, threading, time\nfrom polyepo.rewards.sandbox import SandboxPool, SandboxConfig, Job, Limits\n"
              "p = SandboxPool(SandboxConfig(isolation='rlimits'), workers=1)\nprint(p.server_pids()[0] if p.isolation else 0, flush=True)\n"
              "threading.Thread(target=p.run, args=(Job('import time\\ntime.sleep(60)\\n', test='pass'), Limits(timeout_s=60)),"
              " daemon=True).start()\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    server = int(proc.stdout.readline())
    pattern = os.path.join(tempfile.gettempdir(), f"polyepo-run-*-s{server}-*")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not glob.glob(pattern):
        time.sleep(0.05)
    left = glob.glob(pattern)
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer, its sandbox server and the job, all at once
    proc.wait()
    time.sleep(0.5)
    cgroups = [d for h in discover()[0] for d in glob.glob(os.path.join(h.parent, f"polyepo-sandbox-{server}-*"))]
    assert left and all(os.path.exists(p) for p in left)  # what the killed pool left behind
    pool_module._STALE_DONE.discard(os.getpid())
    pool_module._remove_stale_once()
    assert not any(os.path.exists(p) for p in left)
    assert not any(os.path.exists(d) for d in cgroups)



def test_the_server_loads_its_own_modules_only():
    """Every job forks the server three times: its memory is what each fork copies. Its start
    skips the packages above the sandbox (rewards, clustering, numpy, yaml ...)."""
    import subprocess
    import sys

    from polyepo.rewards.sandbox import pool as pool_module

    probe = ("import polyepo.rewards.sandbox.server, polyepo.rewards.sandbox.supervise\n"
             "print(sorted(m for m in sys.modules if m.startswith(('numpy', 'yaml', 'polyepo'))))")
    out = subprocess.run([sys.executable, "-I", "-c", pool_module._PACKAGES + probe, "{}", pool_module._SRC],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = eval(out.stdout)
    assert "polyepo.rewards.sandbox.server" in loaded
    assert not [m for m in loaded if not m.startswith("polyepo.rewards.sandbox") and m not in
                ("polyepo", "polyepo.rewards")], loaded
