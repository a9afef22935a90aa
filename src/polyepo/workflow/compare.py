"""``polyepo compare``: one config, several estimators x seeds, then evaluation and a report.

Only ``trainer.estimator`` and ``trainer.seed`` change between runs, so the runs differ in the
advantage (and the sampling seed) alone. Finished runs are skipped and interrupted ones resumed,
so the command can be re-run after a failure without losing work.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from ..models import is_model_dir, latest_checkpoint
from .config import ConfigError, RunConfig, load_run_config, run_differences
from .run import prepare, train

console = Console(stderr=True)


def plan_runs(base: RunConfig, estimators: list[str], seeds: list[int]) -> list[RunConfig]:
    """One config per (estimator, seed); each is checked before anything trains."""
    if not estimators or not seeds:
        raise ConfigError("compare needs at least one estimator and one seed")
    for what, values in (("estimator", estimators), ("seed", seeds)):
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{what} {', '.join(twice)} named twice: each run would count twice in the report")
    if "{estimator}" not in base.output_dir or "{seed}" not in base.output_dir:
        raise ConfigError(f"output_dir {base.output_dir!r} must contain {{estimator}} and {{seed}} so that runs do not overwrite each other")
    runs = []
    for est in estimators:
        for seed in seeds:
            cfg = dataclasses.replace(base, trainer={**base.trainer, "estimator": est, "seed": seed})
            prepare(cfg)  # fails here, before any training, on a bad estimator or setting
            runs.append(cfg)
    return runs


def train_all(runs: list[RunConfig], *, resume: bool = True) -> list[Path]:
    out_dirs = []
    for i, cfg in enumerate(runs, 1):
        out = cfg.resolved_output_dir()
        label = f"[{i}/{len(runs)}] {cfg.trainer['estimator']} seed {cfg.trainer['seed']}"
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


def run_compare(config: str | None, overrides: list[str], estimators: list[str], seeds: list[int], *,
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
