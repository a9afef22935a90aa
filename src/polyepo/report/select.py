"""Which results go into which report: the runs named, their run directories' ``run.yaml``, the split.

A results file named on the command line is always reported: in the report of its split, or,
with ``split`` given, in that report (which refuses it when it is of another split). A training
run directory brings its ``eval/*.jsonl``; of those, the ones of the run's task (from its
``run.yaml``, or ``task`` when given) and of the splits to report are kept. The splits are
``split`` when given, else the run directories' ``eval.splits`` (from ``run.yaml``), else every
split found; with several, there is one report per split. What is taken from a ``run.yaml`` and
everything left out is said in a note; a run directory whose results are all left out, or a
name given twice, is an error: nothing named is ever dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluate.results import read_header
from .runs import RunSpec, check_comparable_headers, run_config

#: What a report is built from: the caller's text (a named file) or a spec (from a run directory).
Entry = str | RunSpec


@dataclass
class Named:
    """One name given by the caller: its text, the specs it brings, its run's config."""

    text: str
    specs: list[RunSpec]
    directory: bool
    config: dict[str, Any] = field(default_factory=dict)
    entry: Entry | None = None
    """What a report of it is built from: the caller's RunSpec, else its text."""


@dataclass
class Selection:
    """Entries per split to report (``None``: no results at all, training logs only) and notes."""

    by_split: dict[str | None, list[Entry]]
    notes: list[str]


def _named(runs: Sequence[Entry | os.PathLike]) -> list[Named]:
    """Every name given, expanded; a file or directory given twice is an error (it would count twice)."""
    out: list[Named] = []
    for r in runs:
        if isinstance(r, RunSpec):
            out.append(Named(str(r.results or r.run_dir), [r], False, entry=r))
            continue
        _, path = RunSpec.split_text(r)
        specs = RunSpec.parse(r)
        out.append(Named(str(r), specs, path.is_dir(), run_config(path) if path.is_dir() else {}, str(r)))
    seen: dict[str, str] = {}
    for n in out:
        for s in n.specs:
            key = str(Path(s.results or s.run_dir).resolve())
            if key in seen:
                twice = f"{n.text} is named twice" if seen[key] == n.text else f"{key} is named twice ({seen[key]}, {n.text})"
                raise ValueError(f"{twice}: its numbers would count twice; name each run once")
            seen[key] = n.text
    return out


def select_runs(runs: Sequence[Entry | os.PathLike], *, split: str | None = None,
                task: str | None = None) -> Selection:
    """The entries to report per split, and notes on what was taken from where and left out."""
    named = _named(runs)
    notes: list[str] = []
    headers = {s.results: read_header(s.results) for n in named for s in n.specs if s.results is not None}
    kept = {n.text: _from_directory(n, headers, task, notes) if n.directory else n.specs for n in named}
    splits = [split] if split is not None else _splits(named, headers, kept, notes)
    by_split: dict[str | None, list[Entry]] = {}
    left: dict[str, list[str]] = {}
    reported: set[str] = set()
    for n in named:
        for s in kept[n.text]:
            if s.results is None:
                continue
            own = headers[s.results]["task"]["split"]
            if not n.directory:  # named by the caller: always reported (a report of another split refuses it)
                by_split.setdefault(split or own, []).append(n.entry or n.text)
            elif own in splits:
                by_split.setdefault(own, []).append(s)
            else:
                left.setdefault(own, []).append(str(s.results))
                continue
            reported.add(n.text)
    for own, files in left.items():
        notes.append(f"left out, of split {own}, not among the splits reported ({', '.join(splits)}; "
                     f"--split {own} reports it): {', '.join(files)}")
    for n in named:
        if n.text not in reported and n.specs[0].results is not None:
            raise ValueError(f"{n.text}: none of its results is reported ({'; '.join(notes)}); "
                             f"name a split it has with --split")
    order = {k: i for i, k in enumerate(splits)}
    by_split = dict(sorted(by_split.items(), key=lambda kv: order.get(kv[0], len(order))))
    _check(by_split, {n.text: n for n in named}, headers)
    logs_only = [s for n in named for s in kept[n.text] if s.results is None]  # training curves in every report
    for entries in by_split.values():
        entries += logs_only
    return Selection(by_split or {None: logs_only}, notes)


def _check(by_split: dict[str | None, list[Entry]], named: dict[str, Named], headers: dict[Path, dict[str, Any]]) -> None:
    """Every report's results comparable, checked on their headers before any report is written
    (a named file of another split is left to its report, which refuses it naming the split)."""
    for key, entries in by_split.items():
        files = [e.results if isinstance(e, RunSpec) else named[e].specs[0].results for e in entries]
        check_comparable_headers({f: headers[f] for f in files if f is not None
                                  and headers[f]["task"]["split"] == key})


def _from_directory(n: Named, headers: dict[Path, dict[str, Any]], task: str | None,
                    notes: list[str]) -> list[RunSpec]:
    """A run directory's specs of the run's task (or ``task``); the others are noted."""
    if n.specs[0].results is None:
        return n.specs  # no eval/ results: training curves only
    run_task = n.config.get("task")
    wanted = task or run_task
    if task is not None and run_task is not None and task != run_task:
        notes.append(f"--task {task} differs from the task {n.text} trained on ({run_task}, its run.yaml): "
                     f"reporting {task} as asked")
    if wanted is None:
        return n.specs
    out = [s for s in n.specs if headers[s.results]["task"]["name"] == wanted]
    other = [f"{s.results} ({headers[s.results]['task']['name']})" for s in n.specs if s not in out]
    if other:
        why = "the one asked" if task is not None else "the run's (its run.yaml; --task NAME reports them)"
        notes.append(f"left out of {n.text}, of another task than {wanted}, {why}: {', '.join(other)}")
    if not out:
        raise ValueError(f"{n.text} has no results of task {wanted} in {n.specs[0].run_dir / 'eval'} "
                         f"(only {', '.join(other)}): name their task with --task, or evaluate the run "
                         f"with `polyepo eval {RunSpec.split_text(n.text)[1]}`")
    return out


def _splits(named: list[Named], headers: dict[Path, dict[str, Any]], kept: dict[str, list[RunSpec]],
            notes: list[str]) -> list[str]:
    """The splits to report without --split: the run directories' eval.splits, else every split found."""
    declared: list[str] = []
    sources = []
    for n in named:
        splits = (n.config.get("eval") or {}).get("splits") if n.directory else None
        if splits:
            declared += [str(s) for s in splits if str(s) not in declared]
            sources.append(str(RunSpec.split_text(n.text)[1] / "run.yaml"))
    if declared:
        notes.append(f"splits {', '.join(declared)} from eval.splits in {', '.join(sources)}")
        return declared
    return sorted({headers[s.results]["task"]["split"] for specs in kept.values() for s in specs
                   if s.results is not None})
