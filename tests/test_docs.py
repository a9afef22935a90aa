"""The numbers printed in the docs are the numbers the code computes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from polyepo.advantages import (
    dr_grpo_advantages,
    grpo_div_advantages,
    pass_at_k_advantages,
    poly_epo_advantages,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_worked_example_table_in_closed_form_doc():
    text = (DOCS / "closed-form.md").read_text()
    section = text.split("## 9. Worked example")[1].split("## 10.")[0]
    rows = [line for line in section.splitlines() if re.match(r"\|\s*\d", line)]
    table = np.array([[float(x) for x in line.strip("|").split("|")] for line in rows])
    assert table.shape == (8, 9)
    r, c = table[:, 1], table[:, 2].astype(int)
    expected = np.column_stack([
        dr_grpo_advantages(r),
        poly_epo_advantages(r, c, 4),
        poly_epo_advantages(r, c, 4, reduction="mean"),
        poly_epo_advantages(r, c, 4, min_distinct=1, degenerate=(100,), reduction="mean"),
        grpo_div_advantages(r, c),
        pass_at_k_advantages(r, None, 4),
    ])
    np.testing.assert_allclose(table[:, 3:], expected, atol=5e-5)


def _table_keys(text: str, first_header: str) -> list[str]:
    """The backticked first cells of the Markdown table whose header row starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    keys = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        keys += re.findall(r"`([^`]+)`", line.split("|")[1])
    return keys


def test_every_step_metric_is_documented_once():
    from polyepo.groups import STEP_METRICS

    text = (DOCS / "training.md").read_text()
    section = text.split("## Logged metrics")[1]
    keys = _table_keys(section, "key")
    assert sorted(keys) == sorted(STEP_METRICS), set(keys) ^ set(STEP_METRICS)
    assert len(keys) == len(set(keys))


def test_settings_tables_match_the_dataclasses():
    from dataclasses import fields

    from polyepo.groups import group_option_names
    from polyepo.train.verl.settings import VerlSettings

    training = _table_keys((DOCS / "training.md").read_text(), "setting")
    assert set(group_option_names()) <= set(training)
    verl = _table_keys((DOCS / "verl.md").read_text().split("## Configuration")[1], "key")
    assert verl == [f.name for f in fields(VerlSettings)]


def test_readme_file_tree_names_every_module():
    readme = (DOCS.parent / "README.md").read_text()
    tree = readme.split("## Files")[1].split("## Docs")[0]
    src = DOCS.parent / "src" / "polyepo"
    missing = [str(p.relative_to(src)) for p in src.rglob("*.py")  # cli/: "one module per command"
               if p.name != "__init__.py" and not p.name.startswith("_") and p.name not in tree
               and p.parent.name != "cli"]
    assert not missing, missing
def test_worked_example_table_in_estimators_doc():
    from polyepo.advantages import (
        darling_advantages,
        group_advantages,
        outcome_explore_advantages,
        pkpo_advantages,
        uniqueness_advantages,
    )

    text = (DOCS / "estimators.md").read_text()
    section = text.split("## Worked example")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\|\s*\d", line)]
    table = np.array([[float(x) for x in line.strip("|").split("|")] for line in rows])
    assert table.shape == (8, 10)
    r, c = table[:, 1], table[:, 2].astype(int)
    expected = np.column_stack([
        pkpo_advantages(r, None, 4),
        pkpo_advantages(r, None, 4, variant="loo"),
        pass_at_k_advantages(r, None, 4, reduction="mean", scale="std"),
        darling_advantages(r, c),
        uniqueness_advantages(r, c),
        outcome_explore_advantages(r, c),
        group_advantages("reinforce_pp_baseline", r),
    ])
    np.testing.assert_allclose(table[:, 3:], expected, atol=5e-5)


def test_estimators_doc_covers_every_registered_estimator():
    from polyepo.advantages import ESTIMATORS

    text = (DOCS / "estimators.md").read_text() + (DOCS / "closed-form.md").read_text()
    for name in ESTIMATORS.names():
        assert f"`{name}`" in text, name
