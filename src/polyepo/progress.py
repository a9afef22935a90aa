"""Progress display: a live bar on a terminal, plain lines anywhere else.

- :func:`progress_bar` (a context manager) shows loops: evaluation, re-scoring, sandbox batches;
- :func:`trainer_callback` shows training: step, reward, diversity and ETA (a transformers
  ``TrainerCallback``); :func:`close_displays` stops it after an interruption.

On a terminal a rich bar is redrawn in place. Where the output is not a terminal (nohup, CI, a
cluster scheduler, a pipe) one plain, complete line is written and flushed at the start, then
every ``every_s`` seconds (or every ``every_steps`` steps), and at the end: never cut to a
width, never held back until the run ends. :class:`ProgressSettings` chooses, from the
environment variables ``POLYEPO_PROGRESS``, ``POLYEPO_PROGRESS_EVERY_S`` and
``POLYEPO_PROGRESS_EVERY_STEPS``. Importing this module loads neither rich's bars nor transformers.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, TextIO

#: display modes: ``auto`` = a bar on a terminal, lines elsewhere
MODES = ("auto", "bar", "lines", "off")
#: what a training display shows: (logged key, label)
SHOWN = (("reward", "reward"), ("polyepo/clusters_distinct_correct", "distinct correct"),
         ("polyepo/cluster_failures", "cluster failures"))


@dataclass
class ProgressSettings:
    """How progress is shown; each field is read from its environment variable (``env``)."""

    mode: str = field(default="auto", metadata={"env": "POLYEPO_PROGRESS", "help": (
        "auto: a live bar when the output is a terminal, plain lines otherwise; bar; lines; off.")})
    every_s: float = field(default=30.0, metadata={"env": "POLYEPO_PROGRESS_EVERY_S", "help": (
        "Plain lines: at most one every this many seconds (besides the first and the last); 0: one per update.")})
    every_steps: int = field(default=0, metadata={"env": "POLYEPO_PROGRESS_EVERY_STEPS", "help": (
        "Plain lines: also one every this many steps (training) or items (loops); 0: by time only.")})

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (isinstance(self.every_s, (int, float)) and self.every_s >= 0 and math.isfinite(self.every_s)):
            raise ValueError(f"progress every_s must be a number >= 0, got {self.every_s!r}")
        if not (isinstance(self.every_steps, int) and self.every_steps >= 0):
            raise ValueError(f"progress every_steps must be an integer >= 0, got {self.every_steps!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProgressSettings:
        """The settings from the environment; a bad value raises ValueError naming its variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = {"mode": str, "every_s": float, "every_steps": int}[f.name](raw)
            except ValueError:
                raise ValueError(f"{f.metadata['env']}={raw!r}: {f.metadata['help']}") from None
        for f in fields(cls):
            if f.name in values:
                try:
                    cls(**{f.name: values[f.name]})
                except ValueError as e:
                    raise ValueError(f"{f.metadata['env']}={env[f.metadata['env']]!r}: {e}") from None
        return cls(**values)


def display_mode(stream: TextIO, enabled: bool = True, settings: ProgressSettings | None = None) -> str:
    """``bar``, ``lines`` or ``off`` for a display on ``stream``."""
    if not enabled:
        return "off"
    mode = (settings or ProgressSettings.from_env()).mode
    if mode != "auto":
        return mode
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return "lines"


def clock(seconds: float) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class _Task:
    description: str
    total: int | None
    completed: int
    metrics: str = ""
    start: float = 0.0
    start_completed: int = 0
    shown_at: float = -math.inf
    shown_completed: int = -1
    shown_metrics: str = ""

    def line(self, now: float) -> str:
        """One complete line: count, share, metrics, elapsed time and ETA."""
        elapsed = now - self.start
        done = self.completed - self.start_completed
        count = f"{self.completed}/{self.total}" if self.total is not None else str(self.completed)
        share = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
        eta = math.nan
        if self.total is not None and done > 0:
            eta = elapsed / done * max(self.total - self.completed, 0)
        metrics = f" | {self.metrics}" if self.metrics else ""
        return f"{self.description} {count}{share}{metrics} | elapsed {clock(elapsed)}, eta {clock(eta)}"


class LineDisplay:
    """Plain progress lines on a stream: the first update, then one per ``every_s`` seconds or
    ``every_steps`` items, and the last (see the module docstring). Same methods as :class:`BarDisplay`."""

    def __init__(self, stream: TextIO, settings: ProgressSettings) -> None:
        self.stream, self.settings = stream, settings
        self.tasks: list[_Task] = []

    def add_task(self, description: str, total: int | None = None, completed: int = 0, metrics: str = "") -> int:
        self.tasks.append(_Task(description, total, completed, metrics, time.monotonic(), start_completed=completed))
        self._show(self.tasks[-1], force=True)
        return len(self.tasks) - 1

    def advance(self, task: int, advance: int = 1, metrics: str | None = None) -> None:
        t = self.tasks[task]
        self.update(task, completed=t.completed + advance, metrics=metrics)

    def update(self, task: int, completed: int | None = None, metrics: str | None = None) -> None:
        t = self.tasks[task]
        if completed is not None:
            t.completed = completed
        if metrics is not None:
            t.metrics = metrics
        self._show(t, force=t.total is not None and t.completed >= t.total)

    def _show(self, t: _Task, force: bool = False) -> None:
        if t.completed == t.shown_completed and (t.metrics == t.shown_metrics or not force):
            return  # nothing new to say (new figures alone wait for the next count, or the end)
        now = time.monotonic()
        s = self.settings
        due = now - t.shown_at >= s.every_s or (s.every_steps and t.completed - t.shown_completed >= s.every_steps)
        if force or due:
            self.stream.write(t.line(now) + "\n")
            self.stream.flush()
            t.shown_at, t.shown_completed, t.shown_metrics = now, t.completed, t.metrics

    def close(self) -> None:
        for t in self.tasks:
            self._show(t, force=True)


class BarDisplay:
    """A rich bar redrawn in place (a terminal): description, bar, count, elapsed, ETA, metrics."""

    def __init__(self, stream: TextIO, transient: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[metrics]}"), console=Console(file=stream),
                                 transient=transient)
        self.progress.start()

    def add_task(self, description: str, total: int | None = None, completed: int = 0, metrics: str = "") -> int:
        return self.progress.add_task(description, total=total, completed=completed, metrics=metrics)

    def advance(self, task: int, advance: int = 1, metrics: str | None = None) -> None:
        self.progress.update(task, advance=advance, **({} if metrics is None else {"metrics": metrics}))

    def update(self, task: int, completed: int | None = None, metrics: str | None = None) -> None:
        self.progress.update(task, completed=completed, **({} if metrics is None else {"metrics": metrics}))

    def close(self) -> None:
        self.progress.stop()  # shows the cursor again


class QuietDisplay:
    """No display (same methods)."""

    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def advance(self, *a: Any, **k: Any) -> None:
        pass

    def update(self, *a: Any, **k: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_display(enabled: bool = True, stream: TextIO | None = None, *, transient: bool = False,
                 settings: ProgressSettings | None = None) -> BarDisplay | LineDisplay | QuietDisplay:
    """The display :func:`display_mode` chooses for ``stream`` (default: standard output)."""
    stream = stream if stream is not None else sys.stdout
    settings = settings or (ProgressSettings.from_env() if enabled else ProgressSettings())
    mode = display_mode(stream, enabled, settings)
    if mode == "bar":
        return BarDisplay(stream, transient)
    if mode == "lines":
        return LineDisplay(stream, settings)
    return QuietDisplay()


@contextmanager
def progress_bar(enabled: bool = True, stream: TextIO | None = None, *, transient: bool = False) -> Iterator[Any]:
    """A display for a loop (``add_task``, ``advance``, ``update``), closed on the way out,
    whatever happens (Ctrl-C included: the terminal gets its cursor back)."""
    display = open_display(enabled, stream, transient=transient)
    try:
        yield display
    finally:
        display.close()


def trainer_callback(trainer: Any = None, stream: TextIO | None = None) -> Any:
    """A :class:`TrainingProgress` that is a transformers ``TrainerCallback`` (for ``add_callback``)."""
    from transformers import TrainerCallback

    cls = type("TrainingProgressCallback", (TrainingProgress, TrainerCallback), {})
    return cls(trainer, stream)


def close_displays(callbacks: Any) -> None:
    """Stop every :class:`TrainingProgress` among ``callbacks`` (after Ctrl-C or a crash, which
    skip ``on_train_end``): the terminal gets its cursor back, the last line is written."""
    for cb in callbacks:
        if isinstance(cb, TrainingProgress):
            cb.close()


class TrainingProgress:
    """Training's step/max_steps, elapsed time, ETA and the latest SHOWN values.

    Per-step values come from the trainer when it has them (a ``PolyEPOTrainer``: the group
    step's ``last_step_metrics`` and ``last_step_reward``, the step's mean over its scored
    rollouts); logged values (averaged over the logging interval) fill in the rest.
    """

    def __init__(self, trainer: Any = None, stream: TextIO | None = None) -> None:
        self.trainer, self.stream = trainer, stream
        self.display: BarDisplay | LineDisplay | QuietDisplay | None = None
        self.task = 0
        self.logged: dict[str, float] = {}
        self.per_step: dict[str, float] = {}

    def metrics(self) -> str:
        last = {**self.logged, **self.per_step}
        return ", ".join(f"{label} {last[key]:.3g}" for key, label in SHOWN
                         if isinstance(last.get(key), (int, float)) and not math.isnan(last[key]))

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.display = open_display(True, self.stream)
        self.task = self.display.add_task("training step", total=state.max_steps, completed=state.global_step,
                                          metrics=self.metrics())

    def on_step_end(self, args, state, control, **kwargs):
        if self.display is None:
            return
        latest = getattr(self.trainer, "last_step_metrics", None)
        if isinstance(latest, Mapping):
            reward = getattr(self.trainer, "last_step_reward", None)
            self.per_step = {k: v for k, v in {**latest, "reward": reward}.items() if isinstance(v, (int, float))}
        self.display.update(self.task, completed=state.global_step, metrics=self.metrics())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.display is not None and logs:
            self.logged.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    def on_train_end(self, args, state, control, **kwargs):
        if self.display is not None:
            self.display.update(self.task, completed=state.global_step, metrics=self.metrics())
        self.close()

    def close(self) -> None:
        if self.display is not None:
            self.display.close()
            self.display = None
