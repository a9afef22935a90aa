"""Progress anywhere: plain, complete lines while a command runs when its output is not a terminal
(the real commands, stdout a pipe), and a terminal whose cursor comes back after Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polyepo.progress import LineDisplay, ProgressSettings, display_mode, progress_bar

#: a complete progress line: what, count, share, [figures,] elapsed and ETA
LINE = re.compile(r"^(?P<what>[a-z ]+) (?P<done>\d+)/(?P<total>\d+) \((?P<pct>\d+)%\)(?: \| (?P<metrics>.+))? "
                  r"\| elapsed \d+:\d\d:\d\d, eta (?:\d+:\d\d:\d\d|-:--:--)$")


def env(**extra: str) -> dict[str, str]:
    """A narrow terminal width, lines at every update; the test session's model cache."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "40", "POLYEPO_PROGRESS_EVERY_S": "0"}
    if "POLYEPO_CACHE" in os.environ:
        base["POLYEPO_CACHE"] = os.environ["POLYEPO_CACHE"]
    return {**base, **extra}


def follow(cmd: list[str], environ: dict[str, str], tmp_path: Path):
    """Run ``cmd`` with stdout a pipe; every stdout line with whether the process was still
    running when it arrived; then the return code and stderr."""
    with open(tmp_path / "stderr.txt", "w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=environ)
        lines = [(line.rstrip("\n"), proc.poll() is None) for line in proc.stdout]
        proc.wait(timeout=60)
        err.seek(0)
        return lines, proc.returncode, err.read()


def progress_lines(lines, what: str) -> list[tuple[re.Match, bool]]:
    return [(m, running) for text, running in lines if (m := LINE.match(text)) and m["what"] == what]


def check_during_run(found: list[tuple[re.Match, bool]], total: int) -> None:
    """Lines came while the command ran (a count strictly between 0 and the total arrived
    before the process ended), counted up to the total, and none was cut."""
    assert found, "no progress lines"
    done = [int(m["done"]) for m, _ in found]
    assert done == sorted(done) and done[-1] == total and all(int(m["total"]) == total for m, _ in found)
    assert any(0 < int(m["done"]) < total and running for m, running in found), [m.string for m, _ in found]


# -- settings and the line display ------------------------------------------------------------

def test_settings_come_from_the_environment_and_bad_values_name_their_variable():
    s = ProgressSettings.from_env({"POLYEPO_PROGRESS": "lines", "POLYEPO_PROGRESS_EVERY_S": "2.5",
                                   "POLYEPO_PROGRESS_EVERY_STEPS": "3"})
    assert (s.mode, s.every_s, s.every_steps) == ("lines", 2.5, 3)
    assert ProgressSettings.from_env({}) == ProgressSettings()
    with pytest.raises(ValueError, match=r"POLYEPO_PROGRESS='fancy'.*one of auto, bar, lines, off"):
        ProgressSettings.from_env({"POLYEPO_PROGRESS": "fancy"})
    with pytest.raises(ValueError, match=r"POLYEPO_PROGRESS_EVERY_S='soon'"):
        ProgressSettings.from_env({"POLYEPO_PROGRESS_EVERY_S": "soon"})
    with pytest.raises(ValueError, match=r"POLYEPO_PROGRESS_EVERY_STEPS='-1'.*>= 0"):
        ProgressSettings.from_env({"POLYEPO_PROGRESS_EVERY_STEPS": "-1"})
    assert display_mode(io.StringIO(), settings=ProgressSettings()) == "lines"  # not a terminal
    assert display_mode(io.StringIO(), settings=ProgressSettings(mode="bar")) == "bar"
    assert display_mode(io.StringIO(), enabled=False) == "off"


def test_lines_every_n_steps_first_and_last_always_and_never_cut():
    out = io.StringIO()
    display = LineDisplay(out, ProgressSettings(every_s=3600, every_steps=4))
    task = display.add_task("training step", total=10)
    figures = "reward 0.5" + ", distinct correct 2.25" * 8  # far wider than any terminal
    for _ in range(10):
        display.advance(task, metrics=figures)
    display.close()
    lines = out.getvalue().splitlines()
    assert [int(LINE.match(x)["done"]) for x in lines] == [0, 4, 8, 10]
    assert all(LINE.match(x)["metrics"] == figures for x in lines[1:])


def test_lines_by_time(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("polyepo.progress.time.monotonic", lambda: now[0])
    out = io.StringIO()
    display = LineDisplay(out, ProgressSettings(every_s=30))
    task = display.add_task("sampling", total=100)
    for _ in range(100):
        now[0] += 1.0  # one item a second: a line at 30, 60, 90 s and at the end
        display.advance(task)
    display.close()
    done = [int(LINE.match(x)["done"]) for x in out.getvalue().splitlines()]
    assert done == [0, 30, 60, 90, 100]
    assert out.getvalue().splitlines()[1].endswith("elapsed 0:00:30, eta 0:01:10")


def test_progress_bar_closes_its_display_on_an_exception():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), progress_bar(True, out) as bar:
        task = bar.add_task("sampling", total=8)
        bar.advance(task, 3)
        raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1].startswith("sampling 3/8 (38%)")


# -- the real commands, stdout a pipe ---------------------------------------------------------

def test_train_prints_lines_during_the_run(toy_base, tmp_path):
    pytest.importorskip("trl")
    cmd = [sys.executable, "-m", "polyepo", "train", f"model={toy_base}", f"output_dir={tmp_path}/run",
           "trainer.max_steps=6", "trainer.per_device_train_batch_size=16", "trainer.save_strategy=no",
           "trainer.logging_steps=3"]
    lines, rc, err = follow(cmd, env(), tmp_path)
    assert rc == 0, err[-2000:]
    found = progress_lines(lines, "training step")
    check_during_run(found, 6)
    for m, _ in found[1:]:  # every step line carries the step's reward and diversity
        assert re.fullmatch(r"reward [\d.e+-]+, distinct correct [\d.e+-]+, cluster failures 0", m["metrics"]), m.string
    assert any(text.startswith("done: model in ") and text.endswith("log.jsonl") for text, _ in lines)  # one line


def test_eval_prints_lines_during_the_run(model_cache, tmp_path):
    cmd = [sys.executable, "-m", "polyepo", "eval", "toy-paths-random", "--task", "toy_paths", "--split", "test",
           "-n", "8", "--limit", "24", "--batch-size", "8", "--max-new-tokens", "6", "--out", str(tmp_path / "r.jsonl")]
    lines, rc, err = follow(cmd, env(), tmp_path)
    assert rc == 0, err[-2000:]
    found = progress_lines(lines, "sampling")
    check_during_run(found, 24 * 8)
    assert re.match(r"24/24 problems scored, reward 0, distinct correct \d", found[-1][0]["metrics"])


def test_score_prints_lines_during_the_sandbox_batch(tmp_path):
    slow = "import time\n\ndef f(x):\n    time.sleep(0.3)\n    return x\n"
    rows = [{"problem_id": f"p{i}", "completion": slow, "test": "assert f(1) == 1"} for i in range(8)]
    src = tmp_path / "s.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines, rc, err = follow([sys.executable, "-m", "polyepo", "score", str(src), "--workers", "1"], env(), tmp_path)
    assert rc == 0, err[-2000:]
    found = progress_lines(lines, "sandbox runs")
    check_during_run(found, 8)
    assert found[-1][0]["metrics"] == "passed 8"


# -- a terminal gets its cursor back after Ctrl-C -------------------------------------------

@pytest.mark.slow
def test_ctrl_c_in_train_shows_the_cursor_again(toy_base, tmp_path):
    """Under a pseudo-terminal the live bar hides the cursor; Ctrl-C (which skips the trainer's
    on_train_end) must still show it again before the command exits."""
    pytest.importorskip("trl")
    import pty
    import select
    import signal

    cmd = [sys.executable, "-m", "polyepo", "train", f"model={toy_base}", f"output_dir={tmp_path}/run",
           "trainer.max_steps=100000", "trainer.per_device_train_batch_size=16", "trainer.save_strategy=no"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env(POLYEPO_PROGRESS="auto", TERM="xterm", COLUMNS="200"),
                            close_fds=True)
    os.close(slave)
    seen = b""

    def read(until: float) -> bytes:
        while time.time() < until:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    return os.read(master, 65536)
                except OSError:  # the terminal closed: the process is gone
                    return b""
        return b""

    deadline = time.time() + 240
    while not re.search(rb"training step.*\d+/100000", seen):  # the bar is live
        assert time.time() < deadline and proc.poll() is None, seen[-2000:]
        seen += read(deadline)
    proc.send_signal(signal.SIGINT)
    deadline = time.time() + 120
    while chunk := read(deadline):
        seen += chunk
    assert proc.wait(timeout=60) == 130, seen[-2000:]
    os.close(master)
    hide, show = seen.rfind(b"\x1b[?25l"), seen.rfind(b"\x1b[?25h")
    assert hide >= 0, "the bar never hid the cursor (not a terminal?)"
    assert show > hide, seen[-2000:]
