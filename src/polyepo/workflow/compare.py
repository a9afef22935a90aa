"""``polyepo compare``: one config, several estimators x seeds, then evaluation and a report.

Only the estimator (its name, its options: ``trainer.estimator``, ``trainer.estimator_options``),
the run's label and ``trainer.seed`` change between runs, so the runs differ in the advantage
(and the sampling seed) alone. The runs come from the config's ``estimators`` list (names, or
``{name, label, options}`` mappings: the same estimator with other options is another run under
its own label) or from ``--estimators``. Finished runs are skipped and interrupted ones resumed,
so the command can be re-run after a failure without losing work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..models import is_model_dir, latest_checkpoint
from ..settings import did_you_mean
from .config import ConfigError, RunConfig, check_label, load_run_config, run_differences
from .run import prepare, train

console = Console(stderr=True)

#: the runs compare trains when neither the config nor --estimators names any
DEFAULT_ESTIMATORS = ("dr_grpo", "poly_epo")
ENTRY_KEYS = ("name", "label", "options")


@dataclass(frozen=True)
class EstimatorRun:
    """One entry of a comparison: an estimator, its options, and the label its runs go under."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


def estimator_runs(entries: list[Any]) -> list[EstimatorRun]:
    """The entries of ``estimators`` (names or ``{name, label, options}`` mappings), checked:
    known keys, a name, a mapping of options, valid and distinct labels (default: the name)."""
    out = []
    for k, entry in enumerate(entries):
        where = f"estimators[{k}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: an estimator name or a {{name, label, options}} mapping, got {entry!r}")
        for key in entry:
            if key not in ENTRY_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), list(ENTRY_KEYS))}; "
                                  f"valid keys: {', '.join(ENTRY_KEYS)}")
        name, options = entry.get("name"), entry.get("options") or {}
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: needs a name (an estimator, see `polyepo estimators`), got {entry!r}")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: options must be a mapping of the estimator's options, got {options!r}")
        out.append(EstimatorRun(name, check_label(entry.get("label", name), f"{where}: label"), dict(options)))
    same = sorted({r.label for r in out if out.count(r) > 1})
    if same:
        raise ConfigError(f"estimator {', '.join(same)} named twice: each run would count twice in the report")
    labels = [r.label for r in out]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise ConfigError(f"estimators: label(s) {', '.join(twice)} name more than one entry; give each entry with "
                          "options a label of its own")
    return out


def plan_runs(base: RunConfig, estimators: list[str | dict] | None, seeds: list[int]) -> list[RunConfig]:
    """One config per (estimator entry, seed); each is checked before anything trains.

    ``estimators``: names or ``{name, label, options}`` mappings (:func:`estimator_runs`); None
    takes the config's ``estimators`` (else :data:`DEFAULT_ESTIMATORS`).
    """
    if estimators is None:
        estimators = list(base.estimators) or list(DEFAULT_ESTIMATORS)
    runs_of = estimator_runs(list(estimators))
    if not runs_of or not seeds:
        raise ConfigError("compare needs at least one estimator and one seed")
    twice = sorted({str(s) for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ConfigError(f"seed {', '.join(twice)} named twice: each run would count twice in the report")
    if "{seed}" not in base.output_dir or not ("{estimator}" in base.output_dir or "{label}" in base.output_dir):
        raise ConfigError(f"output_dir {base.output_dir!r} must contain {{label}} (or {{estimator}}) and {{seed}} so "
                          "that runs do not overwrite each other")
    runs, dirs = [], {}
    for entry in runs_of:
        for seed in seeds:
            trainer = {**base.trainer, "estimator": entry.name, "seed": seed,
                       "estimator_options": {**base.trainer.get("estimator_options", {}), **entry.options}}
            cfg = dataclasses.replace(base, label=entry.label, estimators=[], trainer=trainer)
            out = str(cfg.resolved_output_dir())
            if out in dirs:
                raise ConfigError(f"runs {dirs[out]} and {entry.label} seed {seed} would share output_dir {out}: "
                                  "use {label} in output_dir")
            dirs[out] = f"{entry.label} seed {seed}"
            prepare(cfg)  # fails here, before any training, on a bad estimator, option or setting
            runs.append(cfg)
    return runs


def train_all(runs: list[RunConfig], *, resume: bool = True) -> list[Path]:
    out_dirs = []
    for i, cfg in enumerate(runs, 1):
        out = cfg.resolved_output_dir()
        label = f"[{i}/{len(runs)}] {cfg.resolved_label()} seed {cfg.trainer['seed']}"
        if resume and is_model_dir(out / "final"):
            console.print(f"{label}: done already ({out}), skipped")
            _flag(cfg, out, "it is kept as trained and evaluated with the config's task (--no-resume trains it afresh)")
        elif resume and out.exists() and latest_checkpoint(out) is not None:
            console.print(f"{label}: resuming {out}")
            _flag(cfg, out, "it continues with the config's settings")
            train(cfg, resume=True)
        else:
            console.print(f"{label}: training -> {out}")
            train(cfg, overwrite=True)
        out_dirs.append(out)
    return out_dirs


def _flag(cfg: RunConfig, out: Path, what_now: str) -> None:
    """Say how an existing run's run.yaml differs from the config it is now part of."""
    diffs = run_differences(cfg, out)
    if diffs:
        console.print(f"warning: {out} was trained with other settings than the config gives (its run.yaml -> "
                      f"the config: {'; '.join(diffs)}); {what_now}", highlight=False, markup=False, soft_wrap=True)


def run_compare(config: str | None, overrides: list[str], estimators: list[str] | None, seeds: list[int], *,
                resume: bool = True, evaluate: bool = True) -> Path:
    base = load_run_config(config, overrides)
    runs = plan_runs(base, estimators, seeds)
    if evaluate:
        from .compare_eval import eval_settings

        eval_settings(base)  # a bad eval section fails before any training
    out_dirs = train_all(runs, resume=resume)
    root = Path(_common_parent(out_dirs))
    if evaluate:
        from .compare_eval import evaluate_and_report

        return evaluate_and_report(base, out_dirs, root)
    return root


def _common_parent(paths: list[Path]) -> Path:
    import os

    return Path(os.path.commonpath([str(p.resolve()) for p in paths])) if len(paths) > 1 else paths[0].parent
