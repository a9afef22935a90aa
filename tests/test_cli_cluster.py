"""``polyepo cluster``, ``cluster-eval`` and ``clusterers`` run as the installed CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from polyepo.standin import Reply

ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyepo", *args], capture_output=True, text=True, input=stdin,
                          timeout=120, env=ENV)


def test_clustering_imports_stay_light():
    code = ("import sys, polyepo.clustering, polyepo.judge, polyepo.clustering.metrics\n"
            "print(','.join(m for m in ('torch', 'transformers', 'openai', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cluster_answer_backend_json_and_out_file(tmp_path):
    groups = [{"prompt": "2+2", "responses": [r"\boxed{4}", "answer is 4", "answer is 5", ""], "rewards": [1, 1, 0, 0]},
              {"prompt": "1+1", "responses": ["2", "2.0"]}]
    src = tmp_path / "groups.jsonl"
    src.write_text("".join(json.dumps(g) + "\n" for g in groups))
    out = run_cli("cluster", str(src), "-b", "answer", "-o", "key=math", "--json", "--out", str(tmp_path / "o.jsonl"))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["clusters"] for x in lines] == [[1, 1, 2, 100], [1, 1]]
    saved = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert saved[0]["rewards"] == [1, 1, 0, 0] and saved[0]["clusters"] == [1, 1, 2, 100]
    assert saved[0]["cluster_meta"]["backend"] == "answer"


def test_cluster_table_with_the_judge_on_loopback(chat_server):
    chat_server.responder = lambda body: Reply(json.dumps({"1": {"reasoning": "a", "cluster_id": 1},
                                                           "2": {"reasoning": "b", "cluster_id": 100}}))
    group = json.dumps({"prompt": "p", "responses": ["x = 1", "zzz"], "correct": [True, False]})
    out = run_cli("cluster", "-", "-b", "judge", "-o", f"base_url={chat_server.base_url}", "-o", "model=m",
                  "-o", "cache_path=", "-o", "prompt=math", stdin=group + "\n")
    assert out.returncode == 0, out.stderr
    assert "1 100" in out.stdout and "judge: calls=1" in out.stdout and "failures=0" in out.stdout
    assert len(chat_server.requests) == 1


def test_cluster_judge_failure_policy_from_the_command_line(chat_server):
    from polyepo.standin import Status

    chat_server.responder = lambda body: Status(500, "down")
    group = json.dumps({"prompt": "p", "responses": ["def f():\n    return 1\n", "def f():\n    return sorted([])\n"]})
    common = ["cluster", "-", "-b", "judge", "-o", f"base_url={chat_server.base_url}", "-o", "model=m",
              "-o", "cache_path=", "-o", "max_retries=0", "-o", "backoff_initial_s=0"]
    out = run_cli(*common, "-o", "on_failure=fallback:python_ast", stdin=group)
    assert out.returncode == 0, out.stderr
    assert "failed -> fallback:python_ast" in out.stdout and "failures=1" in out.stdout
    out = run_cli(*common, "-o", "on_failure=raise", stdin=group)
    assert out.returncode == 1 and "on_failure='raise' stops here" in out.stderr and "Traceback" not in out.stderr
    out = run_cli(*common, "-o", "max_wait_s=0.5", "-o", "status_interval_s=0.2", stdin=group)  # wait: the default
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "paused until it answers" in out.stderr and "has not answered" in out.stderr and "rerun" in out.stderr


def test_cluster_eval_builtin_set():
    out = run_cli("cluster-eval", "-b", "python_ast", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["summary"]["groups"] == 10 and 0 < res["summary"]["ari"] <= 1
    table = run_cli("cluster-eval", "-b", "exact")
    assert table.returncode == 0 and "HumanEval/13" in table.stdout and "ARI" in table.stdout


def test_cli_errors_are_one_line():
    bad = run_cli("cluster-eval", "-b", "pyast")
    assert bad.returncode == 2 and "valid clusterers" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_cli("cluster-eval", "-b", "python_ast", "-o", "threshhold=0.1")
    assert bad.returncode == 2 and "valid options: threshold" in bad.stderr
    bad = run_cli("cluster", "-", stdin='{"prompt": "p"}\n')
    assert bad.returncode == 2 and "'responses' list" in bad.stderr


@pytest.mark.parametrize("cmd", ["clusterers", "--help"])
def test_listing(cmd):
    out = run_cli(cmd)
    assert out.returncode == 0
    for name in (["answer", "embedding", "exact", "judge", "python_ast"] if cmd == "clusterers"
                 else ["cluster", "cluster-eval", "clusterers", "advantage"]):
        assert name in out.stdout
