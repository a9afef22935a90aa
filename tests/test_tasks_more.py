"""reasoning-gym and JSONL tasks: rows, rewards with known answers, clear errors on bad files."""

from __future__ import annotations

import json

import pytest

from polyepo.rewards import make_reward
from polyepo.tasks import load_task


def test_reasoning_gym_rows_and_reward():
    pytest.importorskip("reasoning_gym")
    task = load_task("reasoning_gym", dataset="basic_arithmetic", sizes={"train": 5, "test": 3})
    train, test = task.rows("train"), task.rows("test")
    assert len(train) == 5 and len(test) == 3 and train != test[:3]
    assert task.rows("train") == train  # seeded
    row = train[0]
    assert row["prompt"].endswith("\\boxed{}.")
    reward = make_reward(task.reward.name)
    n = 4
    completions = [f"... so \\boxed{{{row['answer']}}}", f"The answer is {row['answer']}", "no idea", "\\boxed{123456789}"]
    out = reward(prompts=[row["prompt"]] * n, completions=completions, rg_dataset=[row["rg_dataset"]] * n,
                 rg_entry=[row["rg_entry"]] * n)
    assert out[:3] == [1.0, 1.0, 0.0] and out[3] < 1.0
    assert reward.last_stats["no_answer"] == 1
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'arithmetik'"):
        load_task("reasoning_gym", dataset="arithmetik")


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_jsonl_code_both_test_styles_scored_in_the_sandbox(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"task_id": "add", "question": "Add two numbers.", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"},
        {"id": "echo", "content": "Print the input doubled.", "input_output": json.dumps({"inputs": ["4\n"], "outputs": ["8\n"]})},
    ])
    task = load_task("jsonl_code", train=train)
    rows = task.rows("train")
    assert [r["problem_id"] for r in rows] == ["add", "echo"]
    assert rows[0]["prompt"][0]["content"].startswith("Add two numbers.")
    reward = make_reward(task.reward.name, **task.reward.options)
    good = ["```python\ndef add(a, b):\n    return a + b\n```", "```python\nprint(int(input()) * 2)\n```"]
    bad = ["```python\ndef add(a, b):\n    return a - b\n```", "```python\nprint(int(input()) + 2)\n```"]
    for comps, expected in ((good, [1.0, 1.0]), (bad, [0.0, 0.0])):
        cols = {k: [r.get(k) for r in rows] for k in ("test", "entry_point", "code_prompt", "test_cases")}
        assert reward(prompts=[r["prompt"] for r in rows], completions=comps, **cols) == expected
    keep = tmp_path / "keep.txt"
    keep.write_text("echo\n")
    assert [r["problem_id"] for r in load_task("jsonl_code", train=train, keep_ids=str(keep)).rows("train")] == ["echo"]


def test_jsonl_math(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [{"problem": "What is 1/2 + 1/4?", "answer": "\\frac{3}{4}"}])
    task = load_task("jsonl_math", test=test, chat=False)
    (row,) = task.rows("test")
    assert task.splits == ("test",) and row["prompt"].startswith("What is 1/2")
    reward = make_reward(task.reward.name)
    assert reward(prompts=[row["prompt"]] * 2, completions=["\\boxed{0.75}", "\\boxed{1}"], answer=[row["answer"]] * 2) == [1.0, 0.0]


@pytest.mark.parametrize("content, match", [
    ("{not json\n", r"bad.jsonl:1: not valid JSON"),
    ('{"x": 1}\n', r"bad.jsonl:1: no problem statement"),
    ('{"prompt": "p"}\n', r"bad.jsonl:1: no tests"),
    ('[1, 2]\n', "must be a JSON object"),
])
def test_jsonl_errors_name_the_line(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        load_task("jsonl_code", train=str(path)).rows("train")


def test_jsonl_needs_a_file(tmp_path):
    with pytest.raises(ValueError, match="needs at least one of train=PATH"):
        load_task("jsonl_code")
    with pytest.raises(ValueError, match="does not exist"):
        load_task("jsonl_math", train=str(tmp_path / "missing.jsonl")).rows("train")
    with pytest.raises(ValueError, match="valid splits: train"):
        load_task("jsonl_math", train=str(tmp_path / "missing.jsonl")).rows("test")
