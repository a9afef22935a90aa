"""docs/rubric.md says what the code does: its prompts, options, statistics and worked example."""

from __future__ import annotations

import re
from pathlib import Path

from polyepo.rewards.rubric import Rubric, RubricOptions, combine
from polyepo.rewards.rubric.prompts import PROMPT_DIR
from polyepo.rewards.rubric.reward import STAT_KEYS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "rubric.md").read_text()


def test_the_prompts_are_quoted_verbatim():
    blocks = re.findall(r"```text\n(.*?)```", DOC, re.S)
    for name in ("build", "score"):
        assert (PROMPT_DIR / f"{name}.md").read_text() in blocks, name


def test_every_option_and_statistic_is_documented():
    for name in RubricOptions.fields():
        assert f"`{name}`" in DOC, name
    for key in STAT_KEYS:
        assert f"`{key}`" in DOC, key


def test_worked_example_table():
    section = DOC.split("Worked example")[1].split("Row 3 is")[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if re.match(r"\|\s*\d", line)]
    rubric = Rubric.from_dict({"outcome": ["a"], "process": ["b", {"text": "c", "weight": 2}, "d"]}, problem_id="x")
    assert len(rows) == 6
    for number, *cells in rows:
        verdicts = dict(zip(rubric.ids, cells[:4]))
        o, p, judged, v, reward = map(float, cells[4:])
        echo = 0.5 if number == "6" else 1.0
        assert rubric.scores(verdicts) == (o, p)
        kw = dict(outcome_weight=0.5, process_weight=0.5, echo_factor=echo)
        assert combine(o, p, **kw) == judged
        assert combine(o, p, verifiable=v, verifiable_weight=0.5, **kw) == reward
