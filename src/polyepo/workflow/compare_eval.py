"""The evaluation half of ``polyepo compare``: the base model and every run, then one report per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from ..settings import unknown_keys_message
from .config import ConfigError, RunConfig

console = Console(stderr=True)

#: ``eval`` keys besides the sampling settings (:class:`polyepo.evaluate.SamplingSettings`' fields).
EVAL_KEYS = ("splits", "limit", "ks")


def eval_settings(cfg: RunConfig) -> dict[str, Any]:
    """The ``eval`` section with defaults: held-out splits of the task, n = 64, the training
    temperature and completion length; the other sampling settings default as in ``polyepo eval``."""
    from dataclasses import fields

    from ..evaluate.sampling import SamplingSettings
    from ..tasks import load_task

    sampling_keys = [f.name for f in fields(SamplingSettings)]
    unknown = sorted(set(cfg.eval) - set(EVAL_KEYS) - set(sampling_keys))
    if unknown:
        raise ConfigError(unknown_keys_message(unknown, [*EVAL_KEYS, *sampling_keys], what="eval key", where="compare"))
    task = load_task(cfg.task, **cfg.task_options)
    from ..evaluate.setup import eval_splits, run_sampling

    splits, source = eval_splits(cfg.eval.get("splits"), task.splits, cfg.train_split)
    bad = [s for s in splits if s not in task.splits]
    if bad:
        raise ConfigError(f"eval.splits {bad} are not splits of task {cfg.task!r}; valid splits: {', '.join(task.splits)}")
    sampling = {"max_new_tokens": None, **run_sampling(cfg.trainer, cfg.eval, sampling_keys)}
    try:
        SamplingSettings.from_options(**sampling)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"eval: {e}") from None
    return {"splits": splits, "splits_from": source, "limit": cfg.eval.get("limit"), "ks": cfg.eval.get("ks"),
            "sampling": sampling}


def evaluate_and_report(cfg: RunConfig, run_dirs: list[Path], root: Path) -> Path:
    """Evaluate the base model (label ``base``) and each run on every eval split; build the reports."""
    from ..evaluate import evaluate
    from ..report import build_report

    s = eval_settings(cfg)
    kw = dict(task=cfg.task, task_options=cfg.task_options, reward=cfg.reward, reward_options=cfg.reward_options or None,
              clusterer=cfg.clusterer, clusterer_options=cfg.clusterer_options or None, limit=s["limit"], **s["sampling"])
    n, seed = s["sampling"]["n"], s["sampling"].get("seed", 0)
    source = s["splits_from"]
    options = f" {cfg.task_options}" if cfg.task_options else ""
    console.print(f"evaluating from the config: task {cfg.task}{options}, splits {', '.join(s['splits'])} ({source}), "
                  f"n {n}; the base model {cfg.model} and {len(run_dirs)} runs", highlight=False, soft_wrap=True)
    base_dir = root / "base" / "eval"
    reports = []
    for split in s["splits"]:
        console.print(f"evaluating on {split}: base model {cfg.model}")
        base_file = evaluate(cfg.model, split=split, label="base",
                             out=base_dir / f"{cfg.task}-{split}-n{n}-s{seed}.jsonl", **kw)
        for run in run_dirs:
            console.print(f"evaluating on {split}: {run}")
            evaluate(run, split=split, **kw)
        out = root / "report" / split
        reports.append(build_report([f"base={base_file}", *map(str, run_dirs)], out, split=split, ks=s["ks"],
                                    title=f"{cfg.task}, split {split}: base model vs trained runs"))
    for r in reports:
        console.print(f"report: {r}")
    return reports[0] if len(reports) == 1 else root / "report"
