"""`polyepo report` from fake run directories: every listed plot exists, bad mixes are refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eval_fakes import fake_results, fake_run_dir
from polyepo.report import RunSpec, build_report

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    made = {"base": fake_results(root / "base.jsonl", label="base")}
    for seed in (0, 1):
        made[f"grpo{seed}"] = fake_run_dir(root, "grpo", seed, popular=0.8, explore=0.1)
        made[f"poly{seed}"] = fake_run_dir(root, "poly_epo", seed, popular=0.2, explore=0.7)
    return made


def images_of(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_lists_only_plots_it_wrote(runs, tmp_path):
    md = build_report([str(p) for p in runs.values()], tmp_path / "rep", ks=[3, 99])
    text = md.read_text()
    listed = images_of(text)
    assert set(listed) == {"pass_at_k.png", "distinct_correct.png", "distinct_at_k.png", "majority_at_k.png", "training.png"}
    for name in listed:
        assert (md.parent / name).read_bytes().startswith(PNG)
    assert sorted(p.name for p in md.parent.glob("*.png")) == sorted(listed)
    html = (md.parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(listed)
    table = text.split("## Results")[1].split("##")[0]
    assert re.search(r"\| grpo \| 2 \| \d\.\d{3} ± \d\.\d{3} \|", table) and "| base | 1 |" in table
    assert "pass@3" in table and "pass@8" in table and "maj@8" in table
    assert "k = 99 skipped: only n = 8" in text  # never extrapolated, said once for all runs
    assert "1 line(s) were not JSON" in text  # the torn log line
    metrics = json.loads((md.parent / "metrics.json").read_text())
    assert set(metrics["labels"]) == {"base", "grpo", "poly_epo"}
    assert metrics["labels"]["grpo"]["pass_at_k"]["1"]["se_over"] == "over 2 runs"
    assert metrics["labels"]["base"]["pass_at_k"]["1"]["se_over"] == "over problems"
    # the fake poly_epo explores more: its answers hold more distinct correct routes
    assert metrics["labels"]["poly_epo"]["distinct_correct"]["mean"] > metrics["labels"]["grpo"]["distinct_correct"]["mean"]


def test_labels_from_the_command_line_and_training_only_runs(runs, tmp_path):
    bare = tmp_path / "train-only"
    bare.mkdir()
    (bare / "log.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.7}\n')
    md = build_report([f"before={runs['base']}", RunSpec(results=runs["grpo0"] / "eval" / "toy_paths-test.jsonl",
                                                         label="after"), f"curve={bare}"], tmp_path / "rep")
    text = md.read_text()
    assert "| before | 1 |" in text and "| after | 1 |" in text
    assert "training.png" in images_of(text)


def test_logs_without_known_keys_give_no_training_plot(tmp_path):
    run = fake_run_dir(tmp_path, "grpo", 0, log_keys=False)
    md = build_report([run], tmp_path / "rep")
    assert "training.png" not in images_of(md.read_text()) and not (md.parent / "training.png").exists()
    assert "No training logs with a reward" in md.read_text()


def test_mismatched_runs_are_refused(runs, tmp_path):
    other_n = fake_results(tmp_path / "n16.jsonl", n=16)
    with pytest.raises(ValueError, match=r"runs differ in n \(samples per problem\)[\s\S]*base.jsonl: 8[\s\S]*n16.jsonl: 16"):
        build_report([runs["base"], other_n], tmp_path / "rep")
    other_split = fake_results(tmp_path / "held.jsonl", split="heldout")
    with pytest.raises(ValueError, match="runs differ in split"):
        build_report([runs["base"], other_split], tmp_path / "rep")
    fewer = fake_results(tmp_path / "few.jsonl", problems=4)
    with pytest.raises(ValueError, match="runs evaluated different problems"):
        build_report([runs["base"], fewer], tmp_path / "rep")
    with pytest.raises(ValueError, match="neither a results file nor a directory"):
        build_report([tmp_path / "nope.jsonl"], tmp_path / "rep")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyepo", *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})


def test_cli_metrics_and_report(runs, tmp_path):
    out = cli("metrics", str(runs["base"]), "--json", "-k", "3", "-k", "64")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["ks"] == [1, 2, 3, 4, 8] and any("k = 64 skipped" in n for n in data["notes"])
    out = cli("metrics", str(runs["base"]), "--filter-base", str(runs["base"]), "--solved", "1:3", "--of", "4",
              "--ids-out", str(tmp_path / "ids.txt"))
    assert out.returncode == 0, out.stderr
    assert "solved 1..3 of 4" in out.stdout and (tmp_path / "ids.txt").read_text().startswith("test-")
    out = cli("report", str(runs["base"]), str(runs["grpo0"]), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "rep" / "report.html").is_file()
    bad = cli("report", str(runs["base"]), str(fake_results(tmp_path / "n16.jsonl", n=16)), "--out", str(tmp_path / "r2"))
    assert bad.returncode == 2 and "runs differ in n" in bad.stderr and "Traceback" not in bad.stderr
    bad = cli("metrics", str(runs["base"]), "--filter-base", str(runs["base"]), "--solved", "1-3")
    assert bad.returncode == 2 and "--solved expects LOW:HIGH" in bad.stderr


def test_split_selects_among_several_results_of_a_run(tmp_path):
    run = fake_run_dir(tmp_path, "poly_epo", 0)
    fake_results(run / "eval" / "toy_paths-heldout.jsonl", label="poly_epo", split="heldout", run_dir=run)
    with pytest.raises(ValueError, match=r"runs differ in split[\s\S]*choose one with --split"):
        build_report([run], tmp_path / "rep")
    md = build_report([run], tmp_path / "rep", split="heldout")
    assert "split `heldout`" in md.read_text()
    with pytest.raises(ValueError, match=r"no results of split 'train' in 1 of the runs named \(.*poly_epo-s0 has heldout, test\)"):
        build_report([run], tmp_path / "rep2", split="train")


def test_a_named_run_of_another_split_is_never_dropped(tmp_path):
    base = fake_results(tmp_path / "a.jsonl", label="base")
    held = fake_results(tmp_path / "h.jsonl", label="held", split="heldout")
    out = cli("report", f"base={base}", f"held={held}", "--split", "test", "--out", str(tmp_path / "rep"))
    assert out.returncode == 2 and not (tmp_path / "rep").exists()
    assert f"held={held} has heldout" in out.stderr and "leave them out of the report or choose another split" in out.stderr
    assert cli("report", f"base={base}", "--split", "test", "--out", str(tmp_path / "rep")).returncode == 0


def test_coverage_gained_over_the_base(runs, tmp_path):
    from polyepo.evaluate import read_results
    from polyepo.metrics import coverage_gain

    md = build_report([str(p) for p in runs.values()], tmp_path / "rep")
    section = md.read_text().split("## Coverage gained over the base")[1].split("##")[0]
    assert "| grpo | 2 |" in section and "| poly_epo | 2 |" in section and "| base |" not in section
    metrics = json.loads((md.parent / "metrics.json").read_text())
    base = read_results(runs["base"]).problems
    for seed, gain in enumerate(metrics["labels"]["poly_epo"]["coverage_gain"]):
        run = read_results(runs[f"poly{seed}"] / "eval" / "toy_paths-test.jsonl").problems
        assert gain == coverage_gain(base, run)
    assert "coverage_gain" not in metrics["labels"]["base"]
    # without a run labelled base there is nothing to gain over
    md = build_report([str(runs["grpo0"]), str(runs["poly0"])], tmp_path / "rep2")
    assert "Coverage gained" not in md.read_text()
