"""A judge outage in the middle of `polyepo train` (the CLI, TRL's trainer, the openai client over
HTTP): under `wait` every step finishes on the judge's own clusters; under `reward_only` each
failed group gets exactly dr_grpo's advantage; past max_wait_s the run stops with exit 75, a
checkpoint and the command that continues it, which then does."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trl")

from polyepo.advantages import compute_advantages  # noqa: E402
from polyepo.io import read_jsonl
from polyepo.standin import ChatServer, Outage  # noqa: E402
from polyepo.standin.judge import StandInJudge  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GROUPS = 16  # examples/toy.yaml: 16 prompts x 8 completions per step
CLIENT = {"max_retries": 3, "backoff_initial_s": 0.1, "backoff_max_s": 1.0, "breaker_after": 8,
          "breaker_cooldown_s": 2.0, "status_interval_s": 4.0, "timeout_s": 10.0, "max_concurrency": 16}


def overrides(base_url: str, out: Path, model: Path, policy: str, steps: int, **more) -> list[str]:
    judge = {"base_url": base_url, "model": "standin", "prompt": "code", "cache_path": "", "on_failure": policy,
             **CLIENT, **more.pop("judge", {})}
    return ["clusterer=judge", *(f"clusterer_options.{k}={v}" for k, v in judge.items()), f"model={model}",
            f"output_dir={out}", f"trainer.max_steps={steps}", "trainer.logging_steps=1", "trainer.log_groups=true",
            "trainer.report_to=[]", *(f"trainer.{k}={v}" for k, v in more.items())]


def train(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "polyepo", "train", "--config", str(ROOT / "examples" / "toy.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def toy_judge() -> StandInJudge:
    return StandInJudge(clusterer="toy_paths", clusterer_options={"width": 3})


def poly_epo(group: dict) -> np.ndarray:
    """examples/toy.yaml's Poly-EPO (set_size 4, sum, |U| > 1) on a logged group's rewards and clusters."""
    return compute_advantages(np.array(group["rewards"]), np.array(group["clusters"]), group_sizes=8,
                              estimator="poly_epo", set_size=4, reduction="sum", min_distinct=2)


def test_wait_finishes_every_step_on_the_judges_clusters(toy_base, tmp_path):
    outage = Outage(toy_judge(), after=4 * GROUPS, seconds=20.0)  # down for 20 s after 4 steps
    with ChatServer(outage, keep_requests=False) as server:
        start = time.monotonic()
        out = train(overrides(server.base_url, tmp_path / "run", toy_base, "wait", steps=12))
        wall = time.monotonic() - start
    assert out.returncode == 0, out.stderr[-3000:]
    assert outage.refused > 0 and wall >= 20.0
    assert "judge unavailable for" in out.stderr and "judge answering again after" in out.stderr  # no terminal here
    logs = [row for row in read_jsonl(tmp_path / "run" / "log.jsonl") if "polyepo/groups" in row]
    assert [row["step"] for row in logs] == list(range(1, 13))
    for row in logs:
        assert row["polyepo/cluster_failures"] == 0 and row["polyepo/cluster_zero_diversity"] == 0
        assert row["polyepo/groups_with_clusters"] == GROUPS
    assert max(row["step_time"] for row in logs) >= 15.0  # one step waited out the outage
    groups = [g for g in read_jsonl(tmp_path / "run" / "groups.jsonl") if g["mode"] == "train"]
    assert len(groups) == 12 * GROUPS and not any(g["failed"] for g in groups)
    for g in groups:
        np.testing.assert_allclose(g["advantages"], poly_epo(g), atol=1e-5)


def test_reward_only_gives_each_failed_group_dr_grpos_advantage(toy_base, tmp_path):
    outage = Outage(toy_judge(), after=3 * GROUPS, seconds=20.0)
    with ChatServer(outage, keep_requests=False) as server:
        out = train(overrides(server.base_url, tmp_path / "run", toy_base, "reward_only", steps=12,
                              max_failed_group_fraction=1.0))
    assert out.returncode == 0, out.stderr[-3000:]
    groups = [g for g in read_jsonl(tmp_path / "run" / "groups.jsonl") if g["mode"] == "train"]
    failed = [g for g in groups if g["failed"]]
    assert len(groups) == 12 * GROUPS and len(failed) >= GROUPS  # at least one whole step in the outage
    for g in groups:
        if g["failed"]:
            assert g["policy"] == "reward_only" and g["error"]
            want = compute_advantages(np.array(g["rewards"]), group_ids=np.zeros(8, dtype=int), estimator="dr_grpo")
            np.testing.assert_allclose(g["advantages"], want, atol=1e-6)
            np.testing.assert_allclose(want, np.array(g["rewards"]) - np.mean(g["rewards"]), atol=1e-12)
        else:
            np.testing.assert_allclose(g["advantages"], poly_epo(g), atol=1e-5)
    logs = [row for row in read_jsonl(tmp_path / "run" / "log.jsonl") if "polyepo/groups" in row]
    assert sum(row["polyepo/cluster_reward_only"] for row in logs) == len(failed)
    assert sum(row["polyepo/cluster_zero_diversity"] for row in logs) == 0


def test_a_judge_down_past_max_wait_stops_the_cli_with_the_command_that_continues(toy_base, tmp_path):
    outage = Outage(toy_judge(), after=3 * GROUPS, seconds=3600.0)
    with ChatServer(outage, keep_requests=False) as server:
        args = overrides(server.base_url, tmp_path / "run", toy_base, "wait", steps=5, save_steps=100,
                         judge={"max_wait_s": 3.0})
        out = train(args)
        assert out.returncode == 75, out.stderr[-3000:]
        err = " ".join(out.stderr.split())  # the message is wrapped to the terminal width
        assert "has not answered for" in err and "max_wait_s=3" in err
        config = ROOT / "examples" / "toy.yaml"
        ckpt = tmp_path / "run" / "checkpoint-3"
        command = shlex.join(["polyepo", "train", "--config", str(config), *args])
        assert f"the newest checkpoint is {ckpt}. Continue from it once the judge answers again with: " \
               f"{command} --resume" in err, err[-2000:]
        assert (ckpt / "optimizer.pt").is_file()
        outage.end()  # the judge is back: run exactly the command it gave
        again = subprocess.run([sys.executable, "-m", "polyepo", *shlex.split(command)[1:], "--resume"], capture_output=True,
                               text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert again.returncode == 0, again.stderr[-3000:]
    steps = [row["step"] for row in read_jsonl(tmp_path / "run" / "log.jsonl") if "polyepo/groups" in row]
    assert steps == [1, 2, 3, 4, 5]
    assert [g["step"] for g in read_jsonl(tmp_path / "run" / "groups.jsonl")] == [s for s in range(5) for _ in range(GROUPS)]
