"""``polyepo rubric build`` and ``polyepo rubric score`` run as the installed CLI against the loopback judge."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from _rubric_judge import BUILT, build_requests, judge, score_requests
from polyepo.standin import Status

ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyepo", "rubric", *args], capture_output=True, text=True,
                          timeout=120, env=ENV)


def judge_options(server, tmp_path) -> list[str]:
    return ["-o", f"base_url={server.base_url}", "-o", "model=m", "-o", "cache_path=", "-o",
            f"rubric_dir={tmp_path / 'rubrics'}", "-o", "backoff_initial_s=0", "-o", "max_retries=0"]


def test_build_for_a_task_writes_files_and_keeps_them(chat_server, tmp_path):
    chat_server.responder = judge
    out = run_cli("build", "--task", "rubric_examples", "--task-option", "kind=math", *judge_options(chat_server, tmp_path))
    assert out.returncode == 0, out.stderr
    files = sorted(p.name for p in (tmp_path / "rubrics").glob("*.yaml"))
    assert files == sorted(f"{pid}.yaml" for pid in ("divisor-sum-360", "stairs-123", "last-digits-7-2023",
                                                      "multiples-3-5-not-7"))
    assert yaml.safe_load((tmp_path / "rubrics" / "stairs-123.yaml").read_text())["process"] == BUILT["process"]
    assert len(build_requests(chat_server)) == 4 and out.stdout.count("built") == 4
    again = run_cli("build", "--task", "rubric_examples", "--task-option", "kind=math", *judge_options(chat_server, tmp_path))
    assert again.returncode == 0 and len(chat_server.requests) == 4 and again.stdout.count("│ file ") == 4
    forced = run_cli("build", "--task", "rubric_examples", "--task-option", "kind=math", "--force",
                     *judge_options(chat_server, tmp_path))
    assert forced.returncode == 0 and len(chat_server.requests) == 8


def test_score_a_file_of_responses(chat_server, tmp_path):
    chat_server.responder = judge
    line = {"problem_id": "half", "problem": "Half of 84?", "reference": "84 / 2 = 42", "answer": "42",
            "responses": ["<O1> <P1> 42", "<P2?>", ""]}
    src = tmp_path / "responses.jsonl"
    src.write_text(json.dumps(line) + "\n")
    out = run_cli("score", str(src), "--json", *judge_options(chat_server, tmp_path))
    assert out.returncode == 0, out.stderr
    results = [json.loads(x) for x in out.stdout.splitlines()]
    # BUILT rubric: O1, P1, P2. O=1, P=0.5 -> 0.75 | P=0.25 -> 0.125 | empty -> 0 without asking
    assert [r["reward"] for r in results] == [0.75, 0.125, 0.0]
    assert [r["status"] for r in results] == ["scored", "scored", "empty"]
    assert results[0]["verdicts"] == {"O1": "met", "P1": "met", "P2": "missed"}
    assert len(score_requests(chat_server)) == 2
    table = run_cli("score", str(src), *judge_options(chat_server, tmp_path))
    assert table.returncode == 0 and "O1:met P1:met P2:missed" in table.stdout and "judge_failures=0" in table.stdout


def test_score_failure_exits_non_zero_with_the_policy_message(chat_server, tmp_path):
    chat_server.responder = lambda body: Status(500, "down")
    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"problem_id": "x", "problem": "p", "reference": "r", "response": "y"}) + "\n")
    out = run_cli("score", str(src), *judge_options(chat_server, tmp_path))
    assert out.returncode == 1 and "on_failure='raise' stops here" in out.stderr
    out = run_cli("score", str(src), "-o", "on_failure=none", "--json", *judge_options(chat_server, tmp_path))
    assert out.returncode == 0 and json.loads(out.stdout)["reward"] is None
    bad = run_cli("build", *judge_options(chat_server, tmp_path))
    assert bad.returncode == 2 and "either a file of problems or --task" in bad.stderr
