"""docs/data.md's worked examples run as written: its files, its commands, its config."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text()
ENV = {**os.environ, "COLUMNS": "200"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The doc's files written out, and its Python block run, in one directory."""
    path = tmp_path_factory.mktemp("data-doc")
    for name, _, body in re.findall(r"`([\w-]+\.(?:jsonl|yaml))`[^`]*?:\n\n(`{3,4})(?:jsonl|yaml)\n(.*?)\2\n", DOC, re.S):
        (path / name).write_text(body)
    for block in re.findall(r"```python\n(.*?)```", DOC, re.S):
        subprocess.run([sys.executable, "-c", block], cwd=path, check=True, timeout=120)
    return path


def doc_commands(prefix: str) -> list[list[str]]:
    lines = [line for block in re.findall(r"```bash\n(.*?)```", DOC, re.S) for line in block.splitlines()]
    return [shlex.split(line.split("  #")[0])[1:] for line in lines if line.startswith(f"polyepo {prefix}")]


def test_the_files_and_blocks_are_all_there(workdir):
    names = {p.name for p in workdir.iterdir()}
    assert {"problems.jsonl", "solutions.jsonl", "stdio.jsonl", "stdio_solutions.jsonl", "math.jsonl",
            "math_answers.jsonl", "math.parquet", "my-code.yaml"} <= names
    assert len(doc_commands("score")) == 4


@pytest.mark.parametrize("k", range(4))
def test_every_score_example_passes_every_answer(workdir, k):
    argv = doc_commands("score")[k]
    out = subprocess.run([sys.executable, "-m", "polyepo", *argv, "--json"], cwd=workdir, capture_output=True,
                         text=True, timeout=300, env=ENV)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["reward_mean"] == 1.0 and summary["scored"] == summary["solutions"] >= 1, summary


def test_a_wrong_answer_fails_so_the_check_means_something(workdir):
    wrong = workdir / "wrong.jsonl"
    wrong.write_text(json.dumps({"problem_id": "sum-line", "completion": "```python\nprint(0)\n```"}) + "\n")
    out = subprocess.run([sys.executable, "-m", "polyepo", "score", str(wrong), "--task", "jsonl_code", "-o",
                          "train=stdio.jsonl", "--json"], cwd=workdir, capture_output=True, text=True, timeout=300, env=ENV)
    assert out.returncode == 0 and json.loads(out.stdout)["reward_mean"] == 0.0


def test_the_training_config_prepares(workdir, monkeypatch):
    pytest.importorskip("trl")
    from polyepo.workflow.config import load_run_config
    from polyepo.workflow.run import prepare

    monkeypatch.chdir(workdir)
    prep = prepare(load_run_config("my-code.yaml"))
    assert [r["problem_id"] for r in prep.rows] == ["two-sum", "is-palindrome"]
    assert prep.reward_name == "code_tests" and prep.clusterer_name == "python_ast"
    assert doc_commands("train")[0] == ["train", "--config", "my-code.yaml", "--dry-run"]
