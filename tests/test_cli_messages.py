"""What a user reads when something is wrong: whole messages, with the file, line and fix; and
every `polyepo` command line in the docs and example headers is one the CLI accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from polyepo.cli._common import error_message
from polyepo.registry import UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
ENV = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}


def cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polyepo", *args], capture_output=True, text=True, input=stdin,
                          timeout=300, env={**ENV, **({"POLYEPO_CACHE": os.environ["POLYEPO_CACHE"]}
                                                     if "POLYEPO_CACHE" in os.environ else {})}, cwd=cwd)


def test_messages_keep_their_closing_quote():
    assert error_message(ValueError("got 'lots'")) == "got 'lots'"
    assert error_message(KeyError("no such key 'x'")) == "no such key 'x'"
    assert error_message(UnknownNameError("unknown task 'x'")) == "unknown task 'x'"
    out = cli("rescore", "missing.jsonl", "--what", "lots")
    assert out.returncode == 2 and out.stderr.strip().endswith("got 'lots'")


def test_brackets_in_messages_are_printed_not_read_as_markup():
    out = cli("rescore", "missing.jsonl", "--what", "[bold]x")
    assert out.returncode == 2 and out.stderr.strip().endswith("got '[bold]x'")


def test_a_broken_yaml_config_names_the_file_line_and_column(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("model: toy-paths-base\ntrainer:\n  max_steps: [1\n")
    out = cli("train", "--config", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}: not valid YAML: line 4, column 1" in out.stderr
    out = cli("train", "trainer.max_steps=[1")
    assert out.returncode == 2 and "override 'trainer.max_steps=[1': the value is not valid YAML" in out.stderr


def test_a_broken_json_line_in_advantage_input_names_file_and_line(tmp_path):
    groups = tmp_path / "g.jsonl"
    groups.write_text('{"rewards": [1, 0]}\n\n{"rewards": [1, 0}\n')
    out = cli("advantage", str(groups))
    assert out.returncode == 2 and f"{groups}:3: not valid JSON" in out.stderr
    out = cli("advantage", "-", stdin='{"rewards": [1, 0]}\n{"clusters": [1]}\n')
    assert out.returncode == 2 and "<stdin>:2: each group must be an object with a 'rewards' list" in out.stderr


def test_a_model_path_that_does_not_exist_is_called_a_path(tmp_path):
    from polyepo.models import resolve_model

    for name in (str(tmp_path / "nope"), "./nope", "runs/a/b"):
        with pytest.raises(ValueError, match="model directory .*nope|model directory runs/a/b does not exist"):
            resolve_model(name)
    with pytest.raises(ValueError, match="unknown bundled model 'smollm3'"):
        resolve_model("smollm3")
    assert resolve_model("Qwen/Qwen3-4B-Base") == "Qwen/Qwen3-4B-Base"  # a hub id stays one


def test_tasks_show_the_defaults_of_tasks_that_need_files():
    out = cli("tasks", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert (rows["jsonl_code"]["reward"], rows["jsonl_code"]["clusterer"]) == ("code_tests", "python_ast")
    assert (rows["jsonl_math"]["reward"], rows["jsonl_math"]["clusterer"]) == ("math_answer", "embedding")


def test_unknown_task_options_list_the_valid_ones():
    from polyepo.tasks import load_task

    with pytest.raises(ValueError, match=r"unknown option 'trian' \(did you mean 'train'\?\) for task 'jsonl_code'; "
                                         r"valid options: train, test, keep_ids"):
        load_task("jsonl_code", trian="x.jsonl")


def test_o_means_option_and_the_old_o_for_out_still_works(tmp_path):
    from eval_fakes import fake_results

    pytest.importorskip("matplotlib")
    results = fake_results(tmp_path / "a.jsonl")
    old = cli("report", str(results), "-o", str(tmp_path / "old"))
    assert old.returncode == 0 and (tmp_path / "old" / "report.md").is_file()
    assert "-o PATH for --out is deprecated" in old.stderr
    new = cli("report", str(results), "--out", str(tmp_path / "new"))
    assert new.returncode == 0 and "deprecated" not in new.stderr
    both = cli("report", str(results), "--out", str(tmp_path / "x"), "-o", str(tmp_path / "y"))
    assert both.returncode == 2 and "give --out once" in both.stderr
    for command in ("eval", "rescore", "report"):
        assert re.search(r"--out\s", cli(command, "--help").stdout) and " -o " not in cli(command, "--help").stdout


def test_dry_run_checks_what_the_real_run_fails_on(tmp_path):
    pytest.importorskip("trl")
    from importlib.util import find_spec

    from polyepo.workflow.config import ConfigError, load_run_config
    from polyepo.workflow.run import prepare

    with pytest.raises(ConfigError, match="learning_rate must be >= 0, got -0.001"):
        prepare(load_run_config(None, ["trainer.learning_rate=-1e-3"]))
    with pytest.raises(ConfigError, match="report_to: unknown integration 'wandbb'"):
        prepare(load_run_config(None, ["trainer.report_to=[wandbb]"]))
    if find_spec("wandb") is None:
        with pytest.raises(ConfigError, match="report_to: 'wandb' is not installed"):
            prepare(load_run_config(None, ["trainer.report_to=[wandb]"]))


@pytest.mark.slow
def test_dry_run_builds_the_optimizer(toy_base, tmp_path):
    out = cli("train", f"model={toy_base}", "trainer.adam_beta1=1.5", "--dry-run", cwd=tmp_path)
    assert out.returncode == 2 and re.search(r"the optimizer 'adamw\w*' refuses its settings: Invalid beta", out.stderr)


def test_trainer_keys_show_the_defaults_a_run_uses():
    pytest.importorskip("trl")
    from importlib.util import find_spec

    out = cli("train", "--list-trainer-keys")
    line = next(x for x in out.stdout.splitlines() if "│ report_to " in x)
    expected = "['tensorboard'] * ('none')" if find_spec("tensorboard") else "[] * ('none')"
    assert expected in line
    assert "100 * (500)" in next(x for x in out.stdout.splitlines() if "│ save_steps " in x)


@pytest.mark.slow
def test_ctrl_c_in_train_says_how_to_resume(toy_base, tmp_path):
    import signal
    import time

    config = tmp_path / "run.yaml"
    config.write_text(f"model: {toy_base}\noutput_dir: {tmp_path}/run\n"
                      "trainer: {max_steps: 1000, save_steps: 1, per_device_train_batch_size: 16, logging_steps: 1}\n")
    proc = subprocess.Popen([sys.executable, "-m", "polyepo", "train", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    deadline = time.time() + 240
    def saved() -> int:  # checkpoints come and go (save_total_limit): look for any past the first
        return max((int(p.name.split("-")[1]) for p in (tmp_path / "run").glob("checkpoint-*")), default=0)

    while saved() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    match = re.search(r"the newest checkpoint is (\S+)\. Continue from it with: (.*) --resume", err)
    assert match and Path(match.group(1)).is_dir(), err[-2000:]
    assert match.group(2) == f"polyepo train --config {config}"


def _commands(text: str) -> list[str]:
    """`polyepo ...` command lines of the bash blocks of a Markdown text (continuations joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.split(r"\s+#", line)[0].strip().removesuffix("&").strip()
            if re.match(r"(\.venv/bin/)?polyepo\s", line):
                lines.append(line)
    return lines


def _header_commands(path: Path) -> list[str]:
    header = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    text = re.sub(r"\\\s*\n\s*", " ", "\n".join(header))
    found = re.findall(r"(?:^|\s)(polyepo (?:train|compare|eval|metrics|report|judge-standin)\s[^(\n]*)", text, re.M)
    return [c.split(", then")[0].strip().removesuffix(".").removesuffix("&").strip() for c in found]


def _parse(argv: list[str]) -> None:
    """Parse ``argv`` with the real command tree (raises the CLI's usage errors), running nothing."""
    from typer.main import get_command

    from polyepo.cli import app

    command, name, parent = get_command(app), "polyepo", None
    while True:
        ctx = command.make_context(name, argv, parent=parent)
        if not hasattr(command, "resolve_command"):
            return
        name, command, argv = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        parent = ctx


def test_every_documented_command_line_parses():
    lines = [(p.name, c) for p in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"] for c in _commands(p.read_text())]
    lines += [(p.name, c) for p in sorted((ROOT / "examples").glob("*.yaml")) for c in _header_commands(p)]
    assert len(lines) > 25 and any(name == "qwen3-4b-leetcode.yaml" and " eval " in c for name, c in lines)
    bad = []
    for where, line in lines:
        try:
            _parse(shlex.split(line)[1:])
        except Exception as e:  # the CLI's usage errors: unknown options, missing arguments
            bad.append(f"{where}: {line}: {e}")
    assert not bad, "\n".join(bad)
    with pytest.raises(Exception, match="No such option: --model"):
        _parse(["eval", "--model", "Qwen/Qwen3-4B-Base", "--n", "16"])  # the old qwen3 header line


def test_a_key_given_twice_is_refused_not_dropped():
    from polyepo.settings import parse_key_values
    from polyepo.workflow.config import ConfigError, parse_overrides

    assert parse_key_values(["a=1", "b=[0, 100]", "c=text"]) == {"a": 1, "b": [0, 100], "c": "text"}
    with pytest.raises(ValueError, match="option 'a' is given twice"):
        parse_key_values(["a=1", "a=2"])
    with pytest.raises(ConfigError, match="override 'trainer.max_steps' is given twice"):
        parse_overrides(["trainer.max_steps=5", "trainer.learning_rate=1e-3", "trainer.max_steps=10"])
    out = cli("advantage", "-r", "1,0,1,0", "-e", "dr_grpo", "-o", "x=1", "-o", "x=2")
    assert out.returncode == 2 and "given twice" in out.stderr
