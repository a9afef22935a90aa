"""The exploration comparison's configs (examples/compare-toy*.yaml): every planned run is valid,
the protocol in docs/evaluation.md names the same estimators, and the dry run goes end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["examples/compare-toy.yaml", "examples/compare-toy-rare.yaml"]


def planned(config: str) -> tuple[list[str], list[int]]:
    """The estimators and seeds of the command written at the top of a config."""
    text = (ROOT / config).read_text()
    estimators = re.search(r"--estimators (\S+)", text).group(1).split(",")
    seeds = [int(s) for s in re.search(r"--seeds (\S+)", text).group(1).split(",")]
    return estimators, seeds


@pytest.mark.parametrize("config", CONFIGS)
def test_every_planned_run_is_valid(config):
    pytest.importorskip("trl")
    from polyepo.advantages import ESTIMATORS
    from polyepo.workflow.compare import plan_runs
    from polyepo.workflow.compare_eval import eval_settings
    from polyepo.workflow.config import load_run_config

    estimators, seeds = planned(config)
    assert seeds == [0, 1, 2] and set(estimators) <= set(ESTIMATORS.names())
    assert {"pkpo", "darling", "uniqueness", "outcome_explore", "reinforce_pp_baseline", "pass_at_k"} <= set(estimators)
    base = load_run_config(ROOT / config)
    runs = plan_runs(base, estimators, seeds)
    assert len(runs) == len(estimators) * 3 and len({str(r.resolved_output_dir()) for r in runs}) == len(runs)
    assert eval_settings(base)["sampling"]["n"] == 64


def test_protocol_doc_names_the_configs_estimators():
    text = (ROOT / "docs" / "evaluation.md").read_text()
    section = text.split("## The exploration comparison")[1].split("\n## ")[0]
    estimators, _ = planned(CONFIGS[0])
    assert planned(CONFIGS[1])[0] == estimators
    for name in estimators:
        assert f"`{name}`" in section
    for config in CONFIGS:
        assert config in section


@pytest.mark.slow
def test_compare_dry_run_end_to_end(toy_base):
    out = subprocess.run(
        [sys.executable, "-m", "polyepo", "compare", "--config", str(ROOT / CONFIGS[0]), "--dry-run",
         "--seeds", "0,1", "--estimators", "dr_grpo,pkpo,reinforce_pp_baseline", f"model={toy_base}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "dry run OK: 6 runs (3 estimators x 2 seeds)" in " ".join(text.split())
    for name in ("dr_grpo", "pkpo", "reinforce_pp_baseline"):
        assert re.search(rf"{name}\s+[+-]\d\.\d{{3}}", text)
