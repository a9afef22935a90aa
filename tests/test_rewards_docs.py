"""docs/rewards.md names every status and every last_stats key that the code produces."""

from __future__ import annotations

import re
from pathlib import Path

from polyepo.rewards import make_reward
from polyepo.rewards.sandbox import STATUSES

DOC = (Path(__file__).resolve().parents[1] / "docs" / "rewards.md").read_text()


def _table_keys(section: str) -> set[str]:
    text = DOC.split(section)[1].split("\n\n###")[0].split("\n## ")[0]
    keys: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    return keys


def test_statuses_table_matches_the_code():
    assert _table_keys("### Statuses") == set(STATUSES)


def test_code_tests_last_stats_table_matches_the_code():
    f = make_reward("code_tests")
    f(None, ["def f():\n    return 1\n"], test=["assert f() == 1"])
    assert _table_keys("### `code_tests`") == set(f.last_stats)


def test_math_answer_last_stats_are_named():
    f = make_reward("math_answer")
    f(None, ["\\boxed{1}"], answer=["1"])
    section = DOC.split("### `math_answer`")[1].split("\n## ")[0]
    assert all(f"`{key}`" in section for key in f.last_stats)
