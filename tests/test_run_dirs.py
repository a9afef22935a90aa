"""Run directories are the source of truth: eval, report and compare take the task, its options
and the splits from a run's run.yaml unless told otherwise, say so, flag contradictions, and
never drop a run named on the command line silently."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval_fakes import fake_results
from polyepo.evaluate.results import read_results, write_results
from polyepo.evaluate.setup import eval_setup


def make_run(root: Path, name: str, *, eval_splits=None, model: bool = False, **cfg) -> Path:
    """A training run directory with the run.yaml `polyepo train` writes (and a model in final/)."""
    run = root / name
    run.mkdir(parents=True)
    config = {"model": "toy-paths-random", "task": "toy_paths", "task_options": {}, "train_split": "train",
              "train_limit": None, "reward": None, "reward_options": {}, "clusterer": None, "clusterer_options": {},
              "output_dir": str(run), "trainer": {"estimator": name.split("-")[0], "seed": 0},
              "eval": {"splits": eval_splits} if eval_splits else {}, **cfg}
    (run / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if model:
        from polyepo.models import resolve_model

        shutil.copytree(resolve_model("toy-paths-random"), run / "final")
    return run


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "80"}
    if "POLYEPO_CACHE" in os.environ:
        env["POLYEPO_CACHE"] = os.environ["POLYEPO_CACHE"]
    return subprocess.run([sys.executable, "-m", "polyepo", *args], capture_output=True, text=True, timeout=300, env=env)


# -- eval ---------------------------------------------------------------------------------------

def test_eval_setup_takes_the_run_config(tmp_path):
    run = make_run(tmp_path, "poly_epo-s0", eval_splits=["heldout"], task_options={"block_prob": 0.5},
                   clusterer="exact", clusterer_options={"casefold": True})
    s = eval_setup(run)
    assert (s.task, s.task_options, s.splits) == ("toy_paths", {"block_prob": 0.5}, ["heldout"])
    assert (s.reward, s.reward_options, s.clusterer, s.clusterer_options) == (None, None, "exact", {"casefold": True})
    assert s.notes == [f"from {run}/run.yaml: task toy_paths {{block_prob: 0.5}}, clusterer exact "
                       "{casefold: True}, splits heldout (eval.splits)"] and s.flags == []
    (run / "checkpoint-2").mkdir()
    assert eval_setup(run / "checkpoint-2").run_dir == run  # a checkpoint of the run: the run's config
    plain = make_run(tmp_path, "dr_grpo-s0")
    s = eval_setup(plain)
    assert s.splits == ["test", "heldout"] and s.clusterer is None and s.task_options == {}
    assert s.notes == [f"from {plain}/run.yaml: task toy_paths, splits test, heldout "
                       "(the task's splits other than train_split train)"]


def test_given_values_win_and_contradictions_are_flagged(tmp_path):
    run = make_run(tmp_path, "poly_epo-s0", eval_splits=["heldout"], task_options={"block_prob": 0.5},
                   clusterer="exact", clusterer_options={"casefold": True})
    other = eval_setup(run, "toy_paths_rare")
    assert (other.task, other.task_options, other.splits, other.clusterer) == ("toy_paths_rare", {}, ["test"], None)
    assert other.flags == [f"--task toy_paths_rare differs from the run's task toy_paths ({run}/run.yaml): evaluating "
                           "toy_paths_rare as asked, with none of the run's task options, reward or clusterer"]
    s = eval_setup(run, "toy_paths", "train", task_options={"block_prob": 0.2, "min_valid": 3}, clusterer="toy_paths")
    assert (s.task_options, s.splits, s.clusterer, s.clusterer_options) == (
        {"block_prob": 0.2, "min_valid": 3}, ["train"], "toy_paths", None)
    assert s.flags == [f"-T block_prob=0.2 differs from the run's block_prob=0.5 ({run}/run.yaml): using 0.2",
                       f"--clusterer toy_paths differs from the run's clusterer exact ({run}/run.yaml): using toy_paths",
                       f"split train is the split the run trained on ({run}/run.yaml)"]
    s = eval_setup(run, clusterer_options={"casefold": False})
    assert (s.clusterer, s.clusterer_options) == ("exact", {"casefold": False}) and "casefold=False differs" in s.flags[0]
    s = eval_setup("toy-paths-random")  # not a run: the defaults, said
    assert (s.task, s.splits) == ("toy_paths", ["test"])
    assert s.notes == ["task toy_paths, split test: the defaults (toy-paths-random is not a training run directory "
                       "with a run.yaml to take them from)"]


def test_cli_eval_of_a_run_directory(model_cache, tmp_path):
    run = make_run(tmp_path, "poly_epo-s0", eval_splits=["test", "heldout"], task_options={"block_prob": 0.5},
                   model=True)
    small = ["-n", "4", "--limit", "2", "--max-new-tokens", "4", "-q"]
    out = cli("eval", str(run), *small)
    assert out.returncode == 0, out.stderr
    assert f"note: from {run}/run.yaml: task toy_paths {{block_prob: 0.5}}, splits test, heldout (eval.splits)" in out.stderr
    for split in ("test", "heldout"):
        header = read_results(run / "eval" / f"toy_paths-{split}-n4-s0.jsonl").header
        assert header["task"]["options"] == {"block_prob": 0.5} and header["task"]["split"] == split
    bad = cli("eval", str(run), *small, "--out", str(tmp_path / "x.jsonl"))
    assert bad.returncode == 2 and "--out names one results file but" in bad.stderr and "give --split" in bad.stderr
    other = cli("eval", str(run), *small, "--task", "toy_paths_rare", "--split", "test")
    assert other.returncode == 0, other.stderr
    assert "warning: --task toy_paths_rare differs from the run's task toy_paths" in other.stderr
    assert read_results(run / "eval" / "toy_paths_rare-test-n4-s0.jsonl").header["task"]["options"] == {}


def test_cli_eval_of_a_run_directory_samples_as_compare_does(model_cache, tmp_path):
    """Without sampling options, a run is evaluated with the settings `polyepo compare` used for
    it (its eval section, the training temperature and completion length), so that the results
    file compare wrote is found again, not a second one at the global defaults; given options win."""
    run = make_run(tmp_path, "poly_epo-s0", eval_splits=["test"], model=True,
                   trainer={"estimator": "poly_epo", "seed": 0, "temperature": 0.7, "max_completion_length": 4},
                   eval={"splits": ["test"], "n": 3, "limit": 2, "seed": 5})
    out = cli("eval", str(run), "-q")
    assert out.returncode == 0, out.stderr
    assert (f"note: from {run}/run.yaml: n 3, temperature 0.7, max_new_tokens 4, seed 5, limit 2 (its evaluation "
            "settings, as `polyepo compare` evaluates it; options given here win)") in " ".join(out.stderr.split())
    res = read_results(run / "eval" / "toy_paths-test-n3-s5.jsonl")
    assert len(res.problems) == 2 and res.header["sampling"]["temperature"] == 0.7
    assert res.header["sampling"]["max_new_tokens"] == 4 and res.header["sampling"]["n"] == 3
    given = cli("eval", str(run), "-q", "-n", "2", "--temperature", "1.0", "--limit", "1")
    assert given.returncode == 0, given.stderr
    assert "max_new_tokens 4, seed 5 (its evaluation" in " ".join(given.stderr.split())
    res = read_results(run / "eval" / "toy_paths-test-n2-s5.jsonl")
    assert len(res.problems) == 1 and res.header["sampling"]["temperature"] == 1.0 and res.header["sampling"]["n"] == 2


# -- report -------------------------------------------------------------------------------------

def results_of(run: Path, split: str, *, task: str = "toy_paths", seed: int = 0) -> Path:
    path = fake_results(run / "eval" / f"{task}-{split}.jsonl", label=run.name.split("-")[0], split=split, seed=seed,
                        run_dir=run)
    if task != "toy_paths":  # the same answers, recorded as another task's
        res = read_results(path)
        write_results(path, {**res.header, "task": {**res.header["task"], "name": task}}, res.problems)
    return path


def test_report_takes_tasks_and_splits_from_the_runs(tmp_path):
    runs = [make_run(tmp_path, f"{est}-s0", eval_splits=["test", "heldout"]) for est in ("dr_grpo", "poly_epo")]
    for run in runs:
        results_of(run, "test")
        results_of(run, "heldout")
    rare = results_of(runs[1], "test", task="toy_paths_rare")
    train = results_of(runs[1], "train")
    base = fake_results(tmp_path / "base.jsonl", label="base")
    out = cli("report", f"base={base}", *map(str, runs), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    assert f"note: splits test, heldout from eval.splits in {runs[0]}/run.yaml, {runs[1]}/run.yaml" in out.stderr
    assert f"left out of {runs[1]}, of another task than toy_paths, the run's (its run.yaml; --task NAME reports " \
           f"them): {rare} (toy_paths_rare)" in out.stderr
    assert f"left out, of split train, not among the splits reported (test, heldout; --split train reports it): {train}" \
           in out.stderr
    test, held = (tmp_path / "rep" / s / "report.md" for s in ("test", "heldout"))
    assert f"wrote {test} and" in out.stdout and f"wrote {held} and" in out.stdout
    for md, labels in ((test, ("base", "dr_grpo", "poly_epo")), (held, ("dr_grpo", "poly_epo"))):
        metrics = json.loads((md.parent / "metrics.json").read_text())
        assert list(metrics["labels"]) == list(labels)
        assert "left out of" in md.read_text()  # the notes are in the report too
    one = cli("report", *map(str, runs), "--split", "heldout", "--out", str(tmp_path / "one"))
    assert one.returncode == 0 and (tmp_path / "one" / "report.md").is_file(), one.stderr


def test_report_task_and_names_given_twice(tmp_path):
    run = make_run(tmp_path, "poly_epo-s0")
    results_of(run, "test")
    results_of(run, "test", task="toy_paths_rare")
    asked = cli("report", str(run), "--task", "toy_paths_rare", "--out", str(tmp_path / "rare"))
    assert asked.returncode == 0, asked.stderr
    assert f"--task toy_paths_rare differs from the task {run} trained on (toy_paths, its run.yaml)" in asked.stderr
    lone = make_run(tmp_path, "dr_grpo-s0")
    results_of(lone, "test")
    none = cli("report", str(lone), "--task", "toy_paths_rare", "--out", str(tmp_path / "none"))
    assert none.returncode == 2 and f"{lone} has no results of task toy_paths_rare" in none.stderr
    twice = cli("report", str(run), f"again={run}/", "--out", str(tmp_path / "twice"))
    assert twice.returncode == 2 and "is named twice" in twice.stderr and "would count twice" in twice.stderr
    assert not (tmp_path / "twice").exists()


def test_a_run_whose_results_are_all_of_other_splits_is_an_error(tmp_path):
    run = make_run(tmp_path, "poly_epo-s0", eval_splits=["heldout"])
    results_of(run, "test")
    out = cli("report", str(run), "--out", str(tmp_path / "rep"))
    assert out.returncode == 2 and f"{run}: none of its results is reported" in out.stderr


# -- compare ------------------------------------------------------------------------------------

def test_compare_flags_a_run_trained_otherwise_and_refuses_duplicates(model_cache, tmp_path, capsys):
    pytest.importorskip("trl")
    from polyepo.workflow.compare import plan_runs, train_all
    from polyepo.workflow.config import ConfigError, load_run_config, run_differences

    config = tmp_path / "c.yaml"
    config.write_text(f"model: toy-paths-random\noutput_dir: {tmp_path}/runs/{{estimator}}-s{{seed}}\n"
                      "trainer: {max_steps: 2}\n")
    base = load_run_config(config)
    with pytest.raises(ConfigError, match="estimator dr_grpo named twice"):
        plan_runs(base, ["dr_grpo", "poly_epo", "dr_grpo"], [0])
    with pytest.raises(ConfigError, match="seed 1 named twice"):
        plan_runs(base, ["dr_grpo"], [1, 1])
    cfg = plan_runs(base, ["dr_grpo"], [0])[0]
    run = make_run(tmp_path / "runs", "dr_grpo-s0", model=True, task_options={"block_prob": 0.5},
                   trainer={"max_steps": 5, "estimator": "dr_grpo", "seed": 0})
    assert run_differences(cfg, run) == ["task_options.block_prob: 0.5 -> None", "trainer.max_steps: 5 -> 2"]
    assert train_all([cfg]) == [run]  # done already: kept, not retrained
    err = capsys.readouterr().err
    assert "done already" in err and f"warning: {run} was trained with other settings than the config gives" in err
    assert "task_options.block_prob: 0.5 -> None; trainer.max_steps: 5 -> 2" in err


def test_a_broken_run_yaml_is_a_one_line_error_in_every_command(tmp_path):
    """eval and report read run.yaml through one reader: the file, the line and column, exit 2."""
    run = tmp_path / "poly_epo-s0"
    run.mkdir()
    (run / "run.yaml").write_text("task: toy_paths\ntrainer: [1\n")
    for command in (["report", str(run), "--out", str(tmp_path / "rep")], ["eval", str(run), "-q"]):
        out = cli(*command)
        assert out.returncode == 2, (command, out.stderr)
        assert f"error: {run}/run.yaml: not valid YAML: line 3, column 1" in " ".join(out.stderr.split()), out.stderr
        assert "Traceback" not in out.stderr
