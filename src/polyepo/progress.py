"""A compact rich progress bar for training: step, ETA and the latest key metrics."""

from __future__ import annotations

from transformers import TrainerCallback

SHOWN = (("reward", "reward"), ("polyepo/clusters_distinct_correct", "distinct correct"),
         ("polyepo/cluster_failures", "cluster failures"))


class RichProgress(TrainerCallback):
    """Shows ``step/max_steps``, elapsed time and ETA, and the last logged values of SHOWN."""

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
