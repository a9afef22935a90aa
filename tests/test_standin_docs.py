"""The stand-in judge's blocks in docs/clustering.md and docs/rubric.md run as written (bash,
the installed command, a real server process), with the answers the docs promise."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polyepo.clustering.evaluate import load_labelled
from polyepo.tasks import load_task

DOCS = Path(__file__).resolve().parents[1] / "docs"
pytest.importorskip("openai")


def standin_block(doc: str) -> str:
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", (DOCS / doc).read_text(), re.S) if "kill %1" in b]
    assert len(blocks) == 1, doc
    return blocks[0]


def run_block(block: str, cwd: Path) -> subprocess.CompletedProcess:
    with socket.socket() as s:  # a free port instead of the doc's 8011
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(cwd),
           "COLUMNS": "200"}
    return subprocess.run(["bash", "-e", "-c", block.replace("8011", str(port))], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_clustering_block_gives_the_offline_ids_over_http(tmp_path):
    groups = [{"prompt": g.get("prompt", ""), "responses": g["responses"]} for g in load_labelled("humaneval_strategies")[:6]]
    (tmp_path / "groups.jsonl").write_text("".join(json.dumps(g) + "\n" for g in groups))
    out = run_block(standin_block("clustering.md"), tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    judged = [json.loads(x) for x in (tmp_path / "judged.jsonl").read_text().splitlines()]
    offline = [json.loads(x) for x in (tmp_path / "offline.jsonl").read_text().splitlines()]
    assert [g["clusters"] for g in judged] == [g["clusters"] for g in offline]
    assert all(g["cluster_meta"]["backend"] == "judge" and not g["cluster_meta"]["failed"] for g in judged)


def test_rubric_block_builds_and_scores(tmp_path):
    row = next(r for r in load_task("rubric_examples", kind="math").rows("train") if r["problem_id"] == "divisor-sum-360")
    line = {k: row[k] for k in ("problem_id", "problem", "reference")}
    attempt = ("Factor: 360 = 2^3 * 3^2 * 5. Each prime power contributes 1 + p + ... + p^a, so the divisor sum "
               "is (1+2+4+8)(1+3+9)(1+5) = 15 * 13 * 6 = 1170. \\boxed{1170}")
    (tmp_path / "responses.jsonl").write_text(json.dumps({**line, "responses": [row["reference"], attempt, "no idea"]}) + "\n")
    block = standin_block("rubric.md").replace("polyepo rubric score responses.jsonl",
                                               "polyepo rubric score --json responses.jsonl")
    out = run_block(block, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(list((tmp_path / "standin-rubrics").glob("*.yaml"))) == 7  # 4 math and 3 code examples
    copied, own, none = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    # the built rubric: O1 "The final answer is 1170.", P1..P5 the reference's five lines
    assert set(copied["verdicts"].values()) == {"met"} and copied["echo"]  # a copy of the rubric is caught
    assert own["verdicts"] == {"O1": "met", "P1": "partial", "P2": "partial", "P3": "met", "P4": "partial", "P5": "met"}
    assert not own["echo"] and own["reward"] == pytest.approx(0.5 * 1 + 0.5 * 3.5 / 5)
    assert none["reward"] == 0.0 and none["status"] == "scored"
