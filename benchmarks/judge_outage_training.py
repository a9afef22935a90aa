"""A judge outage in the middle of a toy training run, under each failure policy, side by side.

    python benchmarks/judge_outage_training.py [--steps 120] [--outage 20] [--after-steps 6]
        [--policies wait,reward_only,zero_diversity] [--model toy-paths-base] [--workdir DIR]

Serves the stand-in judge (answering with the toy task's own routes) on 127.0.0.1 behind a
scheduled outage (:class:`polyepo.standin.Outage`: HTTP 503 for ``--outage`` seconds once
``--after-steps`` steps' worth of requests have been answered), and runs, once per policy,

    polyepo train --config examples/toy.yaml clusterer=judge clusterer_options.on_failure=POLICY ...

against it (a real subprocess: the CLI, TRL's trainer, the ``openai`` client over HTTP), with the
judge client's times scaled down ~10x from their defaults (backoff up to 6 s, breaker cool-down
6 s) and ``trainer.max_failed_group_fraction=1.0`` (so that ``reward_only`` and ``zero_diversity``
do not stop the run). From each run's ``groups.jsonl`` and ``log.jsonl`` it prints: steps
finished, steps with a failed group, groups the judge failed on, groups given zero diversity
and the reward-only advantage, groups with no gradient at all (every advantage 0), the largest
gap between a ``reward_only`` group's advantages and ``dr_grpo``'s on its logged rewards, the
mean and the longest step, the run's wall time and the judge's status lines. What it does not measure: a real judge's recovery, or GPU step times (a toy step takes
~0.1 s, so the policies that do not wait run many steps through the outage).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from polyepo.advantages import compute_advantages
from polyepo.io import read_jsonl
from polyepo.standin import ChatServer, Outage
from polyepo.standin.judge import StandInJudge

ROOT = Path(__file__).resolve().parents[1]
GROUPS_PER_STEP = 16  # examples/toy.yaml: 128 completions = 16 prompts x 8
#: the judge client's options: defaults scaled down ~10x in time (a toy step is ~0.1 s)
CLIENT = {"max_retries": 5, "backoff_initial_s": 0.1, "backoff_max_s": 6.0, "breaker_after": 8,
          "breaker_cooldown_s": 6.0, "status_interval_s": 5.0, "timeout_s": 12.0, "max_concurrency": 16}


def train_command(policy: str, base_url: str, out: Path, steps: int, model: str | None) -> list[str]:
    """The `polyepo train` command line of one run."""
    options = {"base_url": base_url, "model": "standin", "prompt": "code", "cache_path": "", "on_failure": policy,
               **CLIENT}
    return [sys.executable, "-m", "polyepo", "train", "--config", str(ROOT / "examples" / "toy.yaml"), "--overwrite",
            "clusterer=judge", *(f"clusterer_options.{k}={v}" for k, v in options.items()),
            f"output_dir={out}", *([f"model={model}"] if model else []), f"trainer.max_steps={steps}",
            "trainer.logging_steps=1", f"trainer.save_steps={steps}", "trainer.log_groups=true",
            "trainer.max_failed_group_fraction=1.0", "trainer.report_to=[]"]


def run_policy(policy: str, *, workdir: Path, steps: int, outage_s: float, after_steps: int,
               model: str | None = None, timeout_s: float = 900) -> dict[str, Any]:
    """Train once against a judge that goes down after ``after_steps`` steps for ``outage_s``
    seconds; returns the run's figures (see :func:`summarise`) and what the outage did."""
    judge = StandInJudge(clusterer="toy_paths", clusterer_options={"width": 3})
    outage = Outage(judge, after=after_steps * GROUPS_PER_STEP, seconds=outage_s)
    out = workdir / policy
    with ChatServer(outage, keep_requests=False) as server:
        start = time.monotonic()
        proc = subprocess.run(train_command(policy, server.base_url, out, steps, model), capture_output=True,
                              text=True, timeout=timeout_s, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.monotonic() - start
    figures = {"returncode": proc.returncode, "stderr": proc.stderr, "wall_s": wall, "refused": outage.refused,
               "outage_began_s": None if outage.began is None else outage.began - start, "out": out}
    if proc.returncode == 0:
        figures.update(summarise(out, proc.stderr))
    return figures


def dr_grpo_gap(group: dict[str, Any]) -> float:
    """Largest |advantage - dr_grpo's advantage| of a group, from its logged rewards (unscorable rows: 0)."""
    rewards = np.array([np.nan if r is None else r for r in group["rewards"]], dtype=float)
    ok = ~np.isnan(rewards)
    expected = np.zeros(rewards.size)
    if ok.any():
        expected[ok] = compute_advantages(rewards[ok], group_ids=np.zeros(int(ok.sum()), dtype=int),
                                          estimator="dr_grpo")
    return float(np.max(np.abs(np.asarray(group["advantages"]) - expected)))


def summarise(out: Path, stderr: str) -> dict[str, Any]:
    """The figures of one finished run, from its groups.jsonl, log.jsonl and stderr."""
    groups = [g for g in read_jsonl(out / "groups.jsonl") if g["mode"] == "train"]
    logs = [row for row in read_jsonl(out / "log.jsonl") if "polyepo/groups" in row]
    reward_only = [g for g in groups if g["failed"] and g["policy"] == "reward_only"]
    return {
        "steps": max(row["step"] for row in logs),
        "groups": len(groups),
        "steps_hit": len({g["step"] for g in groups if g["failed"]}),
        "failed": sum(g["failed"] for g in groups),
        "zero_diversity": sum(g["failed"] and g["policy"] == "zero_diversity" for g in groups),
        "reward_only": len(reward_only),
        "dr_grpo_gap": max((dr_grpo_gap(g) for g in reward_only), default=0.0),
        "no_gradient": sum(not any(g["advantages"]) for g in groups),
        "longest_step_s": max(row.get("step_time", 0.0) for row in logs),
        "step_s": sum(row.get("step_time", 0.0) for row in logs) / len(logs),
        "status_lines": stderr.count("judge unavailable for"),
        "groups_log": groups, "log": logs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--outage", type=float, default=20.0, help="seconds of HTTP 503")
    parser.add_argument("--after-steps", type=int, default=6, help="steps answered before the outage")
    parser.add_argument("--policies", default="wait,reward_only,zero_diversity")
    parser.add_argument("--model", default=None, help="default: examples/toy.yaml's (toy-paths-base)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="polyepo-outage-"))
    rows = {}
    for policy in args.policies.split(","):
        rows[policy] = run_policy(policy, workdir=workdir, steps=args.steps, outage_s=args.outage,
                                  after_steps=args.after_steps, model=args.model)
        if rows[policy]["returncode"] != 0:
            sys.exit(f"{policy}: polyepo train failed ({rows[policy]['returncode']}):\n{rows[policy]['stderr'][-3000:]}")
    print(f"toy run of {args.steps} steps x {GROUPS_PER_STEP} groups; the judge answers HTTP 503 for "
          f"{args.outage:g} s after {args.after_steps} steps' requests; runs in {workdir}")
    print("steps_hit: steps with a failed group; no_gradient: groups whose advantages are all 0 (a failure under "
          "zero_diversity, or equal rewards and one strategy); step_s: mean seconds per step")
    keys = ["steps", "steps_hit", "failed", "zero_diversity", "reward_only", "no_gradient", "dr_grpo_gap", "step_s",
            "longest_step_s", "wall_s", "status_lines"]
    print(f"{'policy':<16}" + "".join(f"{k:>15}" for k in keys))
    for name, row in rows.items():
        print(f"{name:<16}" + "".join(f"{row[k]:>15.3g}" if isinstance(row[k], float) else f"{row[k]:>15}"
                                      for k in keys))
        print(f"{'':<16}judge requests refused during the outage: {row['refused']}")
    if "wait" in rows:
        w = rows["wait"]
        ok = w["steps"] == args.steps and w["failed"] == 0 and w["zero_diversity"] == 0 and w["refused"] > 0
        print(f"target: wait finishes all {args.steps} steps with no failed and no zero-diversity group -> "
              f"{w['steps']} steps, {w['failed']} failed, {w['zero_diversity']} zero-diversity "
              f"{'OK' if ok else 'MISSED'}")
    if "reward_only" in rows:
        r = rows["reward_only"]
        ok = r["reward_only"] > 0 and r["dr_grpo_gap"] < 1e-6
        print(f"target: every reward_only group gets dr_grpo's advantage -> {r['reward_only']} groups, largest gap "
              f"{r['dr_grpo_gap']:.2g} {'OK' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
