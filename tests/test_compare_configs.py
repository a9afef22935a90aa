"""The exploration comparison's configs (examples/compare-toy*.yaml) and per-estimator options in
``polyepo compare``: every planned run is valid, the protocol in docs/evaluation.md names the same
runs, entries with options become runs of their own, and the dry run goes end to end."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from polyepo.workflow.config import ConfigError, load_run_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["examples/compare-toy.yaml", "examples/compare-toy-rare.yaml"]
#: the four methods that are another estimator's options (docs/evaluation.md)
WITH_OPTIONS = {"pass_at_k_training": ("pass_at_k", {"scale": "std", "reduction": "mean"}),
                "pkpo_loo": ("pkpo", {"variant": "loo"}),
                "darling_correct_only": ("darling", {"correct_only": True}),
                "outcome_explore_historical": ("outcome_explore", {"variant": "historical"})}


def planned(config: str):
    """The entries of a config and the seeds of the command written at its top."""
    from polyepo.workflow.compare import estimator_runs

    text = (ROOT / config).read_text()
    seeds = [int(s) for s in re.search(r"--seeds (\S+)", text).group(1).split(",")]
    return estimator_runs(load_run_config(ROOT / config).estimators), seeds


@pytest.mark.parametrize("config", CONFIGS)
def test_every_planned_run_is_valid(config):
    pytest.importorskip("trl")
    from polyepo.advantages import ESTIMATORS
    from polyepo.workflow.compare import plan_runs
    from polyepo.workflow.compare_eval import eval_settings

    entries, seeds = planned(config)
    assert seeds == [0, 1, 2] and {e.name for e in entries} == set(ESTIMATORS.names()) - {"grpo", "rloo", "set_rl"}
    for label, (name, options) in WITH_OPTIONS.items():
        assert any(e.label == label and e.name == name and e.options == options for e in entries)
    base = load_run_config(ROOT / config)
    runs = plan_runs(base, None, seeds)  # the config's own list
    assert len(runs) == len(entries) * 3 == 39 and len({str(r.resolved_output_dir()) for r in runs}) == 39
    run = next(r for r in runs if r.label == "pass_at_k_training")
    assert run.trainer["estimator"] == "pass_at_k" and run.trainer["estimator_options"] == {"scale": "std", "reduction": "mean"}
    assert run.resolved_output_dir().name == "pass_at_k_training-seed0" and run.estimators == []
    assert eval_settings(base)["sampling"]["n"] == 64


def test_protocol_doc_names_the_configs_runs():
    text = (ROOT / "docs" / "evaluation.md").read_text()
    section = text.split("## The exploration comparison")[1].split("\n## ")[0]
    entries, _ = planned(CONFIGS[0])
    assert planned(CONFIGS[1])[0] == entries
    for entry in entries:
        assert f"`{entry.label}`" in section
    for config in CONFIGS:
        assert config in section


def test_entries_with_options(tmp_path):
    pytest.importorskip("trl")
    from polyepo.workflow.compare import plan_runs

    def config(text):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        return load_run_config(path)

    base = config("output_dir: runs/{label}-{seed}\ntrainer: {estimator_options: {set_size: 3}}\n"
                  "estimators: [pass_at_k, {name: pkpo, label: pkpo_loo, options: {variant: loo}}, pkpo]\n")
    runs = plan_runs(base, None, [0, 1])
    assert [(r.label, r.trainer["estimator"], r.trainer["seed"]) for r in runs][::2] == \
        [("pass_at_k", "pass_at_k", 0), ("pkpo_loo", "pkpo", 0), ("pkpo", "pkpo", 0)]
    assert runs[2].trainer["estimator_options"] == {"set_size": 3, "variant": "loo"}  # over the config's
    assert [str(r.resolved_output_dir()) for r in runs[2:4]] == ["runs/pkpo_loo-0", "runs/pkpo_loo-1"]
    assert [r.label for r in plan_runs(base, ["pass_at_k"], [0])] == ["pass_at_k"]  # --estimators replaces the list
    bad = [
        ("estimators: [{name: pkpo, options: {variant: loo}}, pkpo]", "label.*pkpo name more than one entry"),
        ("estimators: [{name: pkpo, lable: x}]", "unknown key 'lable'.*did you mean 'label'"),
        ("estimators: [{name: pkpo, label: a/b}]", "label 'a/b'.*letters, digits"),
        ("estimators: [{label: x}]", "needs a name"),
        ("estimators: [{name: pkpo, options: [loo]}]", "options must be a mapping"),
        ("estimators: [{name: pkpo, label: x, options: {varaint: loo}}]", "varaint"),
        ("estimators: [{name: pkpo, label: x, options: {variant: low}}]", "variant"),
        ("estimators: pkpo", "estimators: expected list"),
        ("estimators: {pkpo: 1}", "estimators must be a list"),
    ]
    for text, match in bad:
        with pytest.raises(ConfigError, match=match):
            plan_runs(config("output_dir: runs/{label}-{seed}\n" + text + "\n"), None, [0])
    shared = config("output_dir: runs/{estimator}-{seed}\nestimators: [pkpo, {name: pkpo, label: loo, options: {variant: loo}}]\n")
    with pytest.raises(ConfigError, match="would share output_dir runs/pkpo-0: use {label}"):
        plan_runs(shared, None, [0])


def test_the_label_names_the_run_in_results_and_reports(tmp_path):
    from polyepo.evaluate.runner import default_label, run_info
    from polyepo.report.runs import RunSpec, load_run

    run = tmp_path / "pkpo_loo-seed0"
    run.mkdir()
    (run / "run.yaml").write_text("label: pkpo_loo\ntrainer: {estimator: pkpo, seed: 0}\n")
    info = run_info(run, run / "final")
    assert info["run"]["label"] == "pkpo_loo" and default_label(info) == "pkpo_loo"
    assert load_run(RunSpec.parse(run)[0], {}).label == "pkpo_loo"
    (run / "run.yaml").write_text("trainer: {estimator: pkpo, seed: 0}\n")
    assert default_label(run_info(run, run / "final")) == "pkpo"


@pytest.mark.slow
def test_compare_dry_run_end_to_end(toy_base, tmp_path):
    config = tmp_path / "compare.yaml"
    text = (ROOT / CONFIGS[0]).read_text()
    entries = ("estimators:\n  - dr_grpo\n  - {name: pkpo, label: pkpo_loo, options: {variant: loo}}\n"
               "  - {name: outcome_explore, label: outcome_explore_historical, options: {variant: historical}}\n"
               "  - reinforce_pp_baseline\noutput_dir:")
    config.write_text(re.sub(r"estimators:.*?\noutput_dir:", entries, text, flags=re.S))
    out = subprocess.run(
        [sys.executable, "-m", "polyepo", "compare", "--config", str(config), "--dry-run", "--seeds", "0,1",
         f"model={toy_base}"], capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert "dry run OK: 8 runs (4 estimator entries x 2 seeds)" in " ".join(text.split())
    for label in ("dr_grpo", "pkpo_loo", "outcome_explore_historical", "reinforce_pp_baseline"):
        assert re.search(rf"{label}\s+[+-]\d\.\d{{3}}.*-> runs/compare-toy/{label}-seed0", text)
