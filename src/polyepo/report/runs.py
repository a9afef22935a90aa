"""Runs to compare: results files and training run directories, grouped by label, checked to match."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluate.results import Results, read_header, read_results
from ..evaluate.summary import Summary, summarize

#: What must be equal across runs for their numbers to be comparable (header path, meaning).
COMPARABLE = (
    (("task", "name"), "task"), (("task", "options"), "task options"), (("task", "split"), "split"),
    (("sampling", "n"), "n (samples per problem)"), (("sampling", "temperature"), "temperature"),
    (("sampling", "top_p"), "top_p"), (("sampling", "top_k"), "top_k"),
    (("sampling", "max_new_tokens"), "max_new_tokens"), (("reward",), "reward function"),
    (("clusterer",), "clusterer"), (("correct_threshold",), "correct threshold"),
)


@dataclass
class RunSpec:
    """One run of a comparison: an evaluation results file and/or a training run directory.

    ``label`` groups runs (runs with one label are replicates, e.g. seeds); by default the
    label recorded in the results file, else the run's label (or estimator) from ``run.yaml``.
    """

    results: Path | None = None
    run_dir: Path | None = None
    label: str | None = None

    @staticmethod
    def split_text(text: str | os.PathLike) -> tuple[str | None, Path]:
        """``(label, path)`` of ``PATH`` or ``LABEL=PATH`` (a path that exists with a ``=`` in it is a path)."""
        text = str(text)
        label, _, raw = text.partition("=") if "=" in text and not Path(text).exists() else (None, "", text)
        return label or None, Path(raw).expanduser()

    @classmethod
    def parse(cls, text: str | os.PathLike) -> list[RunSpec]:
        """``PATH`` or ``LABEL=PATH``; a directory brings its ``log.jsonl`` and ``eval/*.jsonl``."""
        label, path = cls.split_text(text)
        if path.is_file():
            return [cls(results=path, label=label or None)]
        if path.is_dir():
            files = sorted((path / "eval").glob("*.jsonl"))
            if not files:
                return [cls(run_dir=path, label=label or None)]
            return [cls(results=f, run_dir=path, label=label or None) for f in files]
        raise ValueError(f"run {str(text)!r}: {path} is neither a results file nor a directory")


@dataclass
class Run:
    """A run loaded: its label, replicate name, results, metrics, and training log."""

    label: str
    name: str
    results: Results | None = None
    summary: Summary | None = None
    run_dir: Path | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    log_notes: list[str] = field(default_factory=list)


def read_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of a ``log.jsonl`` that have a numeric ``step``; lines that are not JSON are skipped
    (noted), and the training's warnings are noted."""
    rows, notes, bad = [], [], 0
    if not path.is_file():
        return [], [f"{path}: no training log"]
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            rows.append(rec)
            if isinstance(rec.get("warning"), str):  # a training warning (degenerate diversity ...)
                notes.append(f"{path}, step {rec['step']}: {rec['warning']}")
    if bad:
        notes.append(f"{path}: {bad} line(s) were not JSON and were skipped")
    return rows, notes


def run_config(run_dir: Path | None) -> dict[str, Any]:
    """A run directory's ``run.yaml`` as a dict ({} without one)."""
    if run_dir is None or not (run_dir / "run.yaml").is_file():
        return {}
    from ..evaluate.setup import read_run_yaml

    return read_run_yaml(run_dir)


def load_run(spec: RunSpec, summarize_options: dict[str, Any], split: str | None = None) -> Run | None:
    """Read a spec's results (summarized with ``summarize_options``) and training log; None when
    ``split`` is given and the results are of another split."""
    if split is not None and spec.results is not None and read_header(spec.results)["task"]["split"] != split:
        return None  # (another split's samples are not read)
    res = read_results(spec.results) if spec.results is not None else None
    run_dir = spec.run_dir
    if run_dir is None and res is not None and res.header.get("model_info", {}).get("run_dir"):
        candidate = Path(res.header["model_info"]["run_dir"])
        run_dir = candidate if candidate.is_dir() else None
    cfg = run_config(run_dir)
    trainer = cfg.get("trainer") or {}
    label = spec.label or (res.label if res is not None else None) or cfg.get("label") or trainer.get("estimator") \
        or (run_dir.name if run_dir else "run")
    seed = trainer.get("seed", (res.header.get("model_info", {}).get("run") or {}).get("seed") if res else None)
    name = f"seed {seed}" if seed is not None else Path(spec.results or run_dir or "run").stem
    log, notes = read_log(run_dir / "log.jsonl") if run_dir is not None else ([], [])
    summary = summarize(res, **summarize_options) if res is not None else None
    return Run(label=str(label), name=name, results=res, summary=summary, run_dir=run_dir, log=log, log_notes=notes)


def _get(header: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        header = header.get(key) if isinstance(header, dict) else None
    return header


def task_options(task: dict[str, Any]) -> dict[str, Any]:
    """A results header's task options with the task's defaults filled in, so that ``{}`` and
    ``{width: 3}`` (the default) compare equal; a task not registered here keeps its options."""
    import inspect

    from ..tasks import TASKS

    try:
        params = inspect.signature(TASKS.get(task.get("name"))).parameters.values()
    except (KeyError, ValueError, TypeError):
        return dict(task.get("options") or {})
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {**defaults, **(task.get("options") or {})}


def check_comparable_headers(headers: dict[Any, dict[str, Any]]) -> None:
    """Refuse results files (``{path: header}``) whose settings differ in a :data:`COMPARABLE`
    entry (task options are compared with the task's defaults filled in)."""
    for path, meaning in COMPARABLE:
        compared = task_options if path == ("task", "options") else None
        values = {p: _get(h, path) for p, h in headers.items()}
        keys = {p: compared(h.get("task") or {}) if compared else v for (p, h), v in zip(headers.items(), values.values())}
        if len({json.dumps(v, sort_keys=True, default=str) for v in keys.values()}) > 1:
            lines = "\n  ".join(f"{p}: {v!r}" for p, v in values.items())
            hint = ("choose one with --split (build_report(split=...))" if meaning == "split" else
                    "re-run the evaluation with equal settings (or re-cluster with `polyepo rescore`) and compare again")
            raise ValueError(f"runs differ in {meaning}; their numbers are not comparable, refusing to mix them:\n  "
                             f"{lines}\n{hint}")


def check_comparable(runs: list[Run]) -> None:
    """Refuse runs whose numbers do not measure the same thing (ValueError naming who differs)."""
    with_results = [r for r in runs if r.results is not None]
    if not with_results:
        return
    check_comparable_headers({r.results.path: r.results.header for r in with_results})
    ref = with_results[0]
    ids = [p["problem_id"] for p in ref.results.problems]
    for r in with_results[1:]:
        other = [p["problem_id"] for p in r.results.problems]
        if other != ids:
            raise ValueError(f"runs evaluated different problems: {ref.results.path} has {len(ids)}, "
                             f"{r.results.path} has {len(other)} (or another set); finish or re-run them on the same problems")


def group(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs by label, labels in first-seen order."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(r.label, []).append(r)
    return out


def combine(values: list[float], ses: list[float]) -> tuple[float, float, str]:
    """Mean over replicates and its standard error: across replicates when there are several
    (``std / sqrt(S)``), else the single run's standard error over problems."""
    if len(values) >= 2:
        return float(np.mean(values)), float(np.std(values, ddof=1) / np.sqrt(len(values))), f"over {len(values)} runs"
    return float(values[0]), float(ses[0]), "over problems"
