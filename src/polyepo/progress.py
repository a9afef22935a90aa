"""Progress display: a rich bar for loops (evaluation, re-scoring) and one for training.

:func:`progress_bar` is a rich progress bar (or a silent stand-in); :class:`RichProgress` shows
training's step, ETA and the latest key metrics, and :func:`trainer_callback` makes it a
transformers ``TrainerCallback``. Importing this module loads neither rich's bars nor
transformers; they load when a bar starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SHOWN = (("reward", "reward"), ("polyepo/clusters_distinct_correct", "distinct correct"),
         ("polyepo/cluster_failures", "cluster failures"))


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar (or a silent stand-in with the same two methods)."""
    if not enabled:
        class _Quiet:
            def add_task(self, *a: Any, **k: Any) -> int:
                return 0

            def advance(self, *a: Any, **k: Any) -> None:
                pass

        yield _Quiet()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        yield bar


def trainer_callback() -> Any:
    """A :class:`RichProgress` that is a transformers ``TrainerCallback`` (for ``add_callback``)."""
    from transformers import TrainerCallback

    cls = type("RichProgressCallback", (RichProgress, TrainerCallback), {})
    return cls()


class RichProgress:
    """Shows ``step/max_steps``, elapsed time and ETA, and the last logged values of SHOWN
    (the training events of a transformers ``TrainerCallback``; see :func:`trainer_callback`)."""

    def __init__(self) -> None:
        self.progress = None
        self.task = None
        self.last: dict[str, float] = {}

    def _metrics(self) -> str:
        return "  ".join(f"{label} {self.last[key]:.3g}" for key, label in SHOWN if key in self.last)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("training"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[metrics]}"))
        self.progress.start()
        self.task = self.progress.add_task("training", total=state.max_steps, completed=state.global_step,
                                           metrics=self._metrics())

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs:
            self.last.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            self.progress.update(self.task, metrics=self._metrics())

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None
