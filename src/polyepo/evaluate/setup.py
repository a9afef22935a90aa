"""What an evaluation evaluates, taken from the model's training run unless given.

A training run directory holds ``run.yaml``, the resolved config it was trained with. For a
model in such a directory (the run directory itself, its ``final/`` or a ``checkpoint-N/``),
:func:`eval_setup` takes the task, its options, the splits (the config's ``eval.splits``, else
the task's splits other than ``train_split``, as ``polyepo compare`` does), the reward and the
clusterer (with their options) from there, and says so in one note. What the caller gives
wins: options are laid over the run's, and a value that contradicts the run (another task,
reward or clusterer, another option value, the split the run trained on) is honoured and
flagged. A model outside a run directory gets task ``toy_paths`` and split ``test`` unless
given, and a note saying these are defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: task and split of a model that is not in a run directory, when none is given
DEFAULT_TASK, DEFAULT_SPLIT = "toy_paths", "test"
_TASKS_OWN = "the task's"


@dataclass
class EvalSetup:
    """The task, splits and components to evaluate with, and what was said about where they came from.

    ``reward``/``clusterer`` None: the task's; their options (when not None) update it.
    ``notes``: where each value came from (one line); ``flags``: contradictions with the run.
    """

    task: str
    task_options: dict[str, Any]
    splits: list[str]
    reward: str | None = None
    reward_options: dict[str, Any] | None = None
    clusterer: str | None = None
    clusterer_options: dict[str, Any] | None = None
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    #: the run's sampling settings (:func:`run_sampling`) and its ``eval.limit``, which the caller
    #: lays under what it was given; empty and None outside a run directory
    run_sampling: dict[str, Any] = field(default_factory=dict)
    run_limit: int | None = None

    def sampling_from_run(self, given: dict[str, Any], given_names: set[str], limit: int | None) -> tuple[dict[str, Any], int | None]:
        """``given`` (every sampling setting, defaults included) with the run's values for those
        not in ``given_names``, and the limit (the given one, else the run's); notes what was taken."""
        run = {k: v for k, v in self.run_sampling.items() if k not in given_names and k in given}
        taken = [f"{k} {v}" for k, v in run.items() if v != given[k]]
        if limit is None and self.run_limit is not None:
            limit = int(self.run_limit)
            taken.append(f"limit {limit}")
        if taken:
            self.notes.append(f"from {self.run_dir / 'run.yaml'}: {', '.join(taken)} (its evaluation settings, as "
                              "`polyepo compare` evaluates it; options given here win)")
        return {**given, **run}, limit

    def evaluate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`polyepo.evaluate.evaluate` (all but the split)."""
        return {"task": self.task, "task_options": self.task_options, "reward": self.reward,
                "reward_options": self.reward_options, "clusterer": self.clusterer,
                "clusterer_options": self.clusterer_options}


def find_run_dir(model: str | os.PathLike) -> Path | None:
    """The training run directory of a model spec (it, or its parent for ``final/`` and
    ``checkpoint-N/``) when it holds a ``run.yaml``; else None."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    return next((c for c in (path, path.parent) if (c / "run.yaml").is_file()), None)


def read_run_yaml(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``run.yaml`` as a dict (ValueError naming the file when it is not one)."""
    from ..settings import read_yaml_mapping

    return read_yaml_mapping(Path(run_dir) / "run.yaml", "a run config (a mapping of keys)")


def _fmt(options: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in options.items()) + "}"


def _options(what: str, given: dict[str, Any] | None, run: dict[str, Any], flags: list[str], where: str) -> dict[str, Any]:
    """The run's options with the given ones laid over; a given value that differs is flagged."""
    for key, value in (given or {}).items():
        if key in run and run[key] != value:
            flags.append(f"{what} {key}={value!r} differs from the run's {key}={run[key]!r} ({where}): using {value!r}")
    return {**run, **(given or {})}


def _component(what: str, name: str | None, options: dict[str, Any] | None, cfg: dict[str, Any],
               taken: list[str], flags: list[str], where: str) -> tuple[str | None, dict[str, Any] | None]:
    """``(name, options)`` of the reward or clusterer: the run's unless given (see the module docstring)."""
    run_name, run_opts = cfg.get(what), dict(cfg.get(f"{what}_options") or {})
    if run_name == "none":  # trained without clustering; evaluation still clusters, with the task's
        flags.append(f"the run trained without a {what} ({what}: none in {where}); evaluating with "
                     f"{name or _TASKS_OWN}")
        return name, options
    if name is not None and name != run_name:
        if run_name is not None:
            flags.append(f"--{what} {name} differs from the run's {what} {run_name} ({where}): using {name}")
        return name, options
    merged = _options(f"--{what}-option", options, run_opts, flags, where) if options or run_opts else None
    if name is None and (run_name is not None or run_opts):
        taken.append(f"{what} {run_name or _TASKS_OWN}" + (f" {_fmt(run_opts)}" if run_opts else ""))
    return run_name if name is None else name, merged


def run_sampling(trainer: dict[str, Any], eval_section: dict[str, Any], sampling_keys: list[str]) -> dict[str, Any]:
    """How a run is evaluated (``polyepo compare``, and ``polyepo eval RUN_DIR``): n = 64, the
    training temperature and completion length, then the config's ``eval`` section's sampling
    settings over them."""
    out: dict[str, Any] = {"n": 64, "temperature": trainer.get("temperature", 1.0)}
    if trainer.get("max_completion_length") is not None:
        out["max_new_tokens"] = trainer["max_completion_length"]
    out.update({k: v for k, v in eval_section.items() if k in sampling_keys})
    return out


def eval_setup(model: str | os.PathLike, task: str | None = None, split: str | None = None, *,
               task_options: dict[str, Any] | None = None, reward: str | None = None,
               reward_options: dict[str, Any] | None = None, clusterer: str | None = None,
               clusterer_options: dict[str, Any] | None = None) -> EvalSetup:
    """What to evaluate ``model`` on: from its run's ``run.yaml`` unless given (module docstring)."""
    run_dir = find_run_dir(model)
    if run_dir is None:
        missing = [f"{k} {v}" for k, v, given in (("task", DEFAULT_TASK, task), ("split", DEFAULT_SPLIT, split))
                   if given is None]
        notes = [f"{', '.join(missing)}: the defaults ({model} is not a training run directory with a run.yaml "
                 "to take them from)"] if missing else []
        return EvalSetup(task or DEFAULT_TASK, dict(task_options or {}), [split or DEFAULT_SPLIT], reward,
                         reward_options, clusterer, clusterer_options, notes=notes)
    cfg = read_run_yaml(run_dir)
    where = str(run_dir / "run.yaml")
    run_task = str(cfg.get("task") or DEFAULT_TASK)
    taken: list[str] = []
    flags: list[str] = []
    if task is not None and task != run_task:
        flags.append(f"--task {task} differs from the run's task {run_task} ({where}): evaluating {task} as "
                     "asked, with none of the run's task options, reward or clusterer")
        return EvalSetup(task, dict(task_options or {}), [split or DEFAULT_SPLIT], reward, reward_options,
                         clusterer, clusterer_options, run_dir, flags=flags)
    run_options = dict(cfg.get("task_options") or {})
    options = _options("-T", task_options, run_options, flags, where)
    taken += [f"task {run_task}" + (f" {_fmt(run_options)}" if run_options else "")] if task is None else \
        [f"task options {_fmt(run_options)}"] if run_options else []
    rew = _component("reward", reward, reward_options, cfg, taken, flags, where)
    clu = _component("clusterer", clusterer, clusterer_options, cfg, taken, flags, where)
    splits = _splits(cfg, run_task, options, split, taken, flags, where)
    notes = [f"from {where}: {', '.join(taken)}"] if taken else []
    from dataclasses import fields

    from .sampling import SamplingSettings

    section = dict(cfg.get("eval") or {})
    sampling = run_sampling(dict(cfg.get("trainer") or {}), section, [f.name for f in fields(SamplingSettings)])
    return EvalSetup(run_task, options, splits, *rew, *clu, run_dir, notes, flags, sampling, section.get("limit"))


def _splits(cfg: dict[str, Any], task: str, options: dict[str, Any], split: str | None, taken: list[str],
            flags: list[str], where: str) -> list[str]:
    train_split = str(cfg.get("train_split") or "train")
    if split is not None:
        if split == train_split:
            flags.append(f"split {split} is the split the run trained on ({where})")
        return [split]
    from ..tasks import load_task

    splits, source = eval_splits((cfg.get("eval") or {}).get("splits"), load_task(task, **options).splits, train_split)
    taken.append(f"splits {', '.join(splits)} ({source})")
    return splits


def eval_splits(declared: Any, task_splits: Any, train_split: str) -> tuple[list[str], str]:
    """The splits a run is evaluated on, and where they come from: ``eval.splits``, else the
    task's splits other than ``train_split`` (else ``train_split`` itself)."""
    if declared:
        return [str(s) for s in declared], "eval.splits"
    return ([s for s in task_splits if s != train_split] or [train_split],
            f"the task's splits other than train_split {train_split}")
