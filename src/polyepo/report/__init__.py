"""Reports that put several runs side by side (base / GRPO / Poly-EPO, several seeds each).

:func:`build_report` writes into one directory: ``report.md`` (Markdown with the PNGs beside it),
``report.html`` (the same, images embedded), ``metrics.json`` (every number), and the plots
``pass_at_k.png``, ``distinct_at_k.png``, ``distinct_correct.png``, ``majority_at_k.png`` (when
majority voting applies) and ``training.png`` (when training logs exist). Runs are refused when
their numbers are not comparable (another task, split, n, sampling setting, reward or clusterer).
See docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..evaluate.results import read_header
from .render import Block, to_html, to_markdown
from .runs import Run, RunSpec, check_comparable, combine, group, load_run
from .select import Selection, select_runs

__all__ = ["RunSpec", "Selection", "build_report", "build_reports", "select_runs"]


def _specs(runs: Sequence[RunSpec | str | os.PathLike]) -> list[tuple[str, RunSpec]]:
    """``(what the caller named, spec)``: a run directory names one spec per results file."""
    out: list[tuple[str, RunSpec]] = []
    for r in runs:
        specs = [r] if isinstance(r, RunSpec) else RunSpec.parse(r)
        named = str(r) if not isinstance(r, RunSpec) else str(r.results or r.run_dir)
        out.extend((named, s) for s in specs)
    return out


def _load(specs: list[tuple[str, RunSpec]], options: dict[str, Any], split: str | None) -> list[Run]:
    """The runs of ``split``; a run named by the caller with no results of that split is an error
    (it never silently leaves the report)."""
    loaded: list[Run] = []
    kept: dict[str, bool] = {}
    splits: dict[str, list[str]] = {}
    for named, spec in specs:
        run = load_run(spec, options, split)
        kept[named] = kept.get(named, False) or run is not None
        if run is None:
            splits.setdefault(named, []).append(read_header(spec.results)["task"]["split"])
        else:
            loaded.append(run)
    dropped = [n for n, ok in kept.items() if not ok]
    if dropped:
        which = "; ".join(f"{n} has {', '.join(sorted(set(splits[n])))}" for n in dropped)
        raise ValueError(f"no results of split {split!r} in {len(dropped)} of the runs named ({which}); "
                         "leave them out of the report or choose another split")
    return loaded


def build_reports(selection: Selection, out_dir: str | os.PathLike, **options: Any) -> list[Path]:
    """One report per split of a :func:`polyepo.report.select.select_runs` selection (``polyepo
    report``: run directories' tasks and ``eval.splits`` from their ``run.yaml``); with several
    splits each report goes to ``out_dir/SPLIT``. Each report's notes hold the selection's notes.
    Returns the ``report.md`` paths. ``options``: those of :func:`build_report`."""
    many = len(selection.by_split) > 1
    title = options.pop("title", "polyepo evaluation report")
    return [build_report(entries, Path(out_dir) / key if many and key else out_dir, split=key,
                         title=f"{title}, split {key}" if many else title, notes=selection.notes, **options)
            for key, entries in selection.by_split.items()]


def build_report(
    runs: Sequence[RunSpec | str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    ks: Iterable[int] | None = None,
    problem_ids: Iterable[str] | None = None,
    filter_note: str | None = None,
    split: str | None = None,
    title: str = "polyepo evaluation report",
    bootstrap: int = 1000,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> Path:
    """Compare ``runs`` and write the report into ``out_dir``; returns the path of ``report.md``.

    Args:
        runs: :class:`RunSpec` objects, or strings ``PATH`` / ``LABEL=PATH`` where PATH is a
            results file or a training run directory (its ``log.jsonl`` and ``eval/*.jsonl``).
        out_dir: directory for the report (created).
        ks: extra k values for the metrics (k > n is skipped with a note).
        problem_ids: restrict every run to these problems (e.g. a pass-rate filter's output);
            ``filter_note`` describes the filter in the report.
        split: keep only results of this task split (a run directory may hold several); a run
            named in ``runs`` with no results of this split is an error, never left out silently.
        title: the report's title.
        bootstrap, seed: bootstrap resamples and seed of the per-run metrics.
        notes: lines for the report's notes (e.g. how the runs were chosen).
    """
    from .plots import plot_curves, plot_distinct_bars, plot_training

    specs = _specs(runs)
    if not specs:
        raise ValueError("no runs to report on")
    options: dict[str, Any] = {"ks": list(ks or []), "bootstrap": bootstrap, "seed": seed,
                               "problem_ids": None if problem_ids is None else set(problem_ids)}
    loaded = _load(specs, options, split)
    check_comparable(loaded)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluated = group([r for r in loaded if r.summary is not None])
    gains = coverage_gains(evaluated)  # once: the report's table and metrics.json
    blocks: list[Block] = [Block("h1", title)]
    if evaluated:
        first = next(iter(evaluated.values()))[0]
        s, n = first.summary, first.summary.n
        blocks += _setup(first, filter_note) + [Block("h2", "Results"), _table(evaluated, s.ks, options["ks"])]
        blocks.append(Block("p", "± is one standard error: across the runs of a label when it has several "
                                 "(e.g. seeds), else over problems (std / √P). Bootstrap standard errors and "
                                 "every k are in `metrics.json`."))
        blocks += _coverage_section(gains, n)
        blocks += [Block("h2", "Coverage: pass@k"), _img(plot_curves(
            evaluated, "pass_at_k", "pass@k", f"pass@k, n = {n} samples per problem, {s.problems} problems",
            out / "pass_at_k.png", probability=True, failure_panel=True),
            "pass@k against k (log scale), ±1 SE band; thin lines are single runs. Right: the unsolved "
            "fraction 1 − pass@k on a log scale, where differences at large k show")]
        blocks += [Block("h2", "Strategy diversity"),
                   _img(plot_distinct_bars(evaluated, out / "distinct_correct.png", n),
                        f"Distinct strategy clusters among the correct answers of a prompt (all {n} samples), mean over prompts"),
                   _img(plot_curves(evaluated, "distinct_at_k", "distinct correct clusters",
                                    "Expected distinct correct strategies among k samples", out / "distinct_at_k.png"),
                        "distinct@k: expected number of distinct strategies among the correct answers of k samples")]
        if all(r.summary.majority_at_k for rs in evaluated.values() for r in rs):
            blocks += [Block("h2", "Majority voting"), _img(plot_curves(
                evaluated, "majority_at_k", "majority@k", "Majority vote over k samples", out / "majority_at_k.png",
                probability=True), "majority@k: accuracy of the most frequent answer among k samples")]
    else:
        blocks.append(Block("p", "No evaluation results were given: training curves only."))
    blocks.append(Block("h2", "Training curves"))
    training = plot_training(group(loaded), out / "training.png")
    blocks.append(_img(training, "Training logs: each run thin, the mean over a label's runs thick")
                  if training else Block("p", "No training logs with a reward or cluster count were found."))
    blocks += _runs_section(loaded, notes)
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, out, title))
    (out / "metrics.json").write_text(json.dumps(_finite(_metrics(evaluated, loaded, gains)), indent=1))
    return out / "report.md"


def _img(path: Path, caption: str) -> Block:
    return Block("img", caption, image=path.name)


def _setup(run: Run, filter_note: str | None) -> list[Block]:
    h = run.results.header
    smp, s = h["sampling"], run.summary
    items = [f"task `{h['task']['name']}` split `{h['task']['split']}`, {s.problems} problems",
             f"n = {smp['n']} samples per problem, temperature {smp['temperature']}, top_p {smp['top_p']}, "
             f"top_k {smp['top_k']}, at most {smp['max_new_tokens']} new tokens",
             f"reward `{h['reward']['name']}`, clusterer `{h['clusterer']['name']}`, "
             f"correct when reward ≥ {h.get('correct_threshold', 1.0)}"]
    if filter_note:
        items.append(f"problem filter: {filter_note}")
    return [Block("h2", "Setup"), Block("ul", items=items)]


def _table_ks(ks: list[int], requested: list[int]) -> list[int]:
    n = ks[-1]
    keep = {k for k in ks if k == 1 or (k & (k - 1) == 0 and (k.bit_length() - 1) % 2 == 0)}
    return sorted(keep | {n} | {k for k in requested if k <= n})


def _table(groups: dict[str, list[Run]], ks: list[int], requested: list[int]) -> Block:
    tks = _table_ks(ks, requested)
    n = ks[-1]
    has_maj = all(r.summary.majority_at_k for rs in groups.values() for r in rs)
    header = ["label", "runs"] + [f"pass@{k}" for k in tks] + [f"distinct correct (n={n})"]
    header += [f"maj@{n}"] if has_maj else []
    rows = []
    for label, runs in groups.items():
        row = [label, str(len(runs))]
        cells = [("pass_at_k", k) for k in tks] + [("distinct_correct", None)] + ([("majority_at_k", n)] if has_maj else [])
        for metric, k in cells:
            ests = [getattr(r.summary, metric) if k is None else getattr(r.summary, metric)[k] for r in runs]
            m, se, _ = combine([e.mean for e in ests], [e.se for e in ests])
            row.append(f"{m:.3f} ± {se:.3f}" if se == se else f"{m:.3f}")
        rows.append(row)
    return Block("table", header=header, rows=rows)


#: The label of the base model in a comparison (``polyepo compare`` evaluates it as ``base``).
BASE_LABEL = "base"
GAIN_COLUMNS = (("solved", "solved at k = n"), ("gained", "gained over base"), ("lost", "lost"),
                ("new_strategies", "new correct strategies"))


def coverage_gains(groups: dict[str, list[Run]]) -> dict[str, list[dict[str, int]]]:
    """Per label (other than ``base``), each run's :func:`polyepo.metrics.coverage_gain` over the
    single ``base`` run; empty without exactly one ``base`` run."""
    from ..metrics import coverage_gain

    base = groups.get(BASE_LABEL, [])
    if len(base) != 1:
        return {}
    ref = base[0].results
    threshold = ref.header.get("correct_threshold", 1.0)
    return {label: [coverage_gain(ref.problems, r.results.problems, correct_threshold=threshold) for r in rs]
            for label, rs in groups.items() if label != BASE_LABEL}


def _coverage_section(gains: dict[str, list[dict[str, int]]], n: int) -> list[Block]:
    if not gains:
        return []
    rows = []
    for label, gs in gains.items():
        cells = []
        for key, _ in GAIN_COLUMNS:
            values = [float(g[key]) for g in gs]
            m, se, _ = combine(values, [float("nan")])
            cells.append(f"{m:.1f} ± {se:.1f}" if len(values) > 1 else f"{m:.0f}")
        rows.append([label, str(len(gs))] + cells)
    problems = next(iter(gains.values()))[0]["problems"]
    return [Block("h2", "Coverage gained over the base"),
            Block("table", header=["label", "runs"] + [c for _, c in GAIN_COLUMNS], rows=rows),
            Block("p", f"Counts over the {problems} problems, with n = {n} samples each: problems with a correct "
                       "sample (solved at k = n), those the base model did not solve (gained) or did (lost), and "
                       "correct strategies of the run that the base never sampled on that problem, summed over "
                       "problems. ± is one standard error across the runs of a label.")]


def _runs_section(runs: list[Run], chosen: Sequence[str] = ()) -> list[Block]:
    rows, notes = [], []
    for r in runs:
        s = r.summary
        model = r.results.header.get("model_info", {}).get("spec", "") if r.results else ""
        rows.append([r.label, r.name, str(r.results.path if r.results else "—"), model,
                     f"{s.pass_at_k[1].mean:.3f}" if s else "—", f"{s.counts['unfinished']}" if s else "—",
                     f"{s.counts['degenerate']}" if s else "—", str(r.run_dir or "—")])
        notes.append([f"{r.label} / {r.name}", (s.notes if s else []) + r.log_notes])
    blocks = [Block("h2", "Runs"), Block("table", header=["label", "run", "results file", "model", "pass@1",
                                                         "unfinished", "degenerate", "training run"], rows=rows)]
    shared = set.intersection(*(set(n) for _, n in notes)) if len(notes) > 1 else set()
    items = list(chosen) + ([f"all runs: {note}" for note in notes[0][1] if note in shared] if shared else [])
    items += [f"{who}: {note}" for who, ns in notes for note in ns if note not in shared]
    if items:
        blocks += [Block("h2", "Notes"), Block("ul", items=items)]
    return blocks


def _finite(obj: Any) -> Any:
    """NaN (an SE from one problem) -> None, so that metrics.json is standard JSON."""
    if isinstance(obj, float):
        return obj if obj == obj else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _metrics(groups: dict[str, list[Run]], runs: list[Run], gains: dict[str, list[dict[str, int]]]) -> dict[str, Any]:
    labels = {}
    for label, rs in groups.items():
        entry: dict[str, Any] = {"runs": [r.name for r in rs]}
        for metric in ("pass_at_k", "distinct_at_k", "majority_at_k"):
            if all(getattr(r.summary, metric) for r in rs):
                entry[metric] = {k: dict(zip(("mean", "se", "se_over"), combine(
                    [getattr(r.summary, metric)[k].mean for r in rs], [getattr(r.summary, metric)[k].se for r in rs])))
                    for k in rs[0].summary.ks}
        entry["distinct_correct"] = dict(zip(("mean", "se", "se_over"), combine(
            [r.summary.distinct_correct.mean for r in rs], [r.summary.distinct_correct.se for r in rs])))
        labels[label] = entry
    for label, gs in gains.items():
        labels[label]["coverage_gain"] = gs
    return {"labels": labels, "runs": [{"label": r.label, "name": r.name, "run_dir": str(r.run_dir or ""),
                                        "summary": r.summary.to_dict() if r.summary else None} for r in runs]}
