"""The evaluation half of ``polyepo compare``: the base model and every run, then one report per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from .config import ConfigError, RunConfig

console = Console(stderr=True)

EVAL_KEYS = {"splits", "n", "limit", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "batch_size", "ks"}


def eval_settings(cfg: RunConfig) -> dict[str, Any]:
    """The ``eval`` section with defaults: held-out splits of the task, n=64, the training
    temperature and completion length."""
    unknown = set(cfg.eval) - EVAL_KEYS
    if unknown:
        raise ConfigError(f"unknown eval key(s) {', '.join(sorted(unknown))}; valid eval keys: {', '.join(sorted(EVAL_KEYS))}")
    from ..tasks import load_task

    task = load_task(cfg.task, **cfg.task_options)
    splits = cfg.eval.get("splits") or [s for s in task.splits if s != cfg.train_split] or [cfg.train_split]
    bad = [s for s in splits if s not in task.splits]
    if bad:
        raise ConfigError(f"eval.splits {bad} are not splits of task {cfg.task!r}; valid splits: {', '.join(task.splits)}")
    return {
        "splits": list(splits), "n": int(cfg.eval.get("n", 64)), "limit": cfg.eval.get("limit"),
        "temperature": float(cfg.eval.get("temperature", cfg.trainer.get("temperature", 1.0))),
        "top_p": float(cfg.eval.get("top_p", 1.0)), "top_k": int(cfg.eval.get("top_k", 0)),
        "max_new_tokens": cfg.eval.get("max_new_tokens", cfg.trainer.get("max_completion_length")),
        "seed": int(cfg.eval.get("seed", 0)), "batch_size": int(cfg.eval.get("batch_size", 256)),
        "ks": cfg.eval.get("ks"),
    }


def evaluate_and_report(cfg: RunConfig, run_dirs: list[Path], root: Path) -> Path:
    """Evaluate the base model (label ``base``) and each run on every eval split; build the reports."""
    from ..evaluate import evaluate
    from ..report import build_report

    s = eval_settings(cfg)
    common = {k: s[k] for k in ("n", "limit", "temperature", "top_p", "top_k", "max_new_tokens", "seed", "batch_size")}
    kw = dict(task=cfg.task, task_options=cfg.task_options, reward=cfg.reward, reward_options=cfg.reward_options or None,
              clusterer=cfg.clusterer, clusterer_options=cfg.clusterer_options or None, **common)
    base_dir = root / "base" / "eval"
    reports = []
    for split in s["splits"]:
        console.print(f"evaluating on {split}: base model {cfg.model}")
        base_file = evaluate(cfg.model, split=split, label="base",
                             out=base_dir / f"{cfg.task}-{split}-n{s['n']}-s{s['seed']}.jsonl", **kw)
        for run in run_dirs:
            console.print(f"evaluating on {split}: {run}")
            evaluate(run, split=split, **kw)
        out = root / "report" / split
        reports.append(build_report([f"base={base_file}", *map(str, run_dirs)], out, split=split, ks=s["ks"],
                                    title=f"{cfg.task}, split {split}: base model vs trained runs"))
    for r in reports:
        console.print(f"report: {r}")
    return reports[0] if len(reports) == 1 else root / "report"
