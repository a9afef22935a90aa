"""``polyepo score``: score a JSONL file of solutions against a task's tests and summarise."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..io import read_jsonl
from . import app
from ._common import console, parse_options, user_errors

_COLUMNS = ("test", "entry_point", "code_prompt", "test_cases", "answer")


def _read_jsonl(source: str) -> list[dict]:
    rows = read_jsonl(source)
    if not rows:
        raise ValueError(f"{source}: no solutions")
    return rows


def _columns(solutions: list[dict], task: Optional[str], task_options: dict, id_field: str) -> tuple[dict, Any]:
    """Per-row reward columns (from the task's rows, joined on id, or from the file) and the reward component."""
    if task is None:
        missing = [i for i, s in enumerate(solutions) if not any(k in s for k in ("test", "test_cases", "answer"))]
        if missing:
            raise ValueError(f"solution {missing[0]} has no test, test_cases or answer; pass --task to take them from a task")
        from ..tasks.base import Component

        component = Component("math_answer" if "answer" in solutions[0] else "code_tests")
        return {c: [s.get(c) for s in solutions] for c in _COLUMNS}, component
    from ..tasks import load_task

    t = load_task(task, **task_options)
    by_id = {}
    for split in t.splits:
        by_id.update({row["problem_id"]: row for row in t.rows(split)})
    unknown = [s.get(id_field) for s in solutions if s.get(id_field) not in by_id]
    if unknown:
        raise ValueError(f"{len(unknown)} solutions name no problem of task {task!r} (first: {unknown[0]!r}); "
                         f"ids look like {next(iter(by_id))!r} (field --id-field {id_field})")
    rows = [by_id[s[id_field]] for s in solutions]
    return {c: [r.get(c) for r in rows] for c in _COLUMNS}, t.reward


def _summary(solutions: list[dict], values: list, reward: Any, id_field: str) -> dict:
    results = getattr(reward, "last_results", None) or [None] * len(values)
    statuses = Counter(r.status if r is not None else ("correct" if v == 1.0 else "not_applicable" if v is None else "incorrect")
                       for r, v in zip(results, values))
    per_problem: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for i, (s, v) in enumerate(zip(solutions, values)):
        if v is not None:
            counts = per_problem[s.get(id_field, f"#{i}")]
            counts[0] += 1
            counts[1] += v == 1.0
    scored = [v for v in values if v is not None]
    out = {"solutions": len(values), "scored": len(scored), "reward_mean": sum(scored) / len(scored) if scored else 0.0,
           "statuses": dict(statuses), "problems": len(per_problem), "stats": getattr(reward, "last_stats", {})}
    n_min = min((n for n, _ in per_problem.values()), default=0)
    if n_min > 1:
        from ..metrics import pass_at_k, powers_of_two

        out["pass_at_k"] = {k: sum(pass_at_k(n, c, k) for n, c in per_problem.values()) / len(per_problem)
                            for k in powers_of_two(n_min)}
    return out


@app.command()
@user_errors
def score(
    source: Annotated[str, typer.Argument(help="JSONL of solutions, one object per line (or - for stdin).")],
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Take tests from this task's rows (e.g. humaneval), joined on --id-field.")] = None,
    field: Annotated[str, typer.Option(help="Field holding the model's answer (a string or chat messages).")] = "completion",
    id_field: Annotated[str, typer.Option(help="Field naming the problem (the task's problem_id).")] = "problem_id",
    workers: Annotated[Optional[int], typer.Option(help="Parallel sandbox servers (default: one per core).")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Wall-clock seconds per run (default: the task's, or 5).")] = None,
    extract: Annotated[str, typer.Option(help="How to find the program: auto, fenced, function, completion, raw.")] = "auto",
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Task option key=value, e.g. prompt_style=completion.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write one JSON result per solution to this JSONL file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run every solution against its tests in the sandbox and print a summary (pass rate, statuses, pass@k)."""
    from ..rewards import make_reward

    solutions = _read_jsonl(source)
    if any(field not in s for s in solutions):
        raise ValueError(f"every solution needs a {field!r} field (choose another with --field)")
    columns, component = _columns(solutions, task, parse_options(option or []), id_field)
    options = dict(component.options)
    if component.name == "code_tests":
        options.update(extract=extract, workers=workers, progress=progress and not as_json)
        if timeout is not None:
            options["timeout_s"] = timeout
    reward = make_reward(component.name, **options)
    values = reward([None] * len(solutions), [s[field] for s in solutions], **columns)
    summary = _summary(solutions, values, reward, id_field)
    if out is not None:
        results = getattr(reward, "last_results", None) or [None] * len(values)
        with out.open("w") as f:
            for s, v, r in zip(solutions, values, results):
                extra = {k: getattr(r, k) for k in ("status", "detail", "wall_s", "cpu_s", "isolation")} if r else {}
                f.write(json.dumps({id_field: s.get(id_field), "reward": v, **extra}) + "\n")
    if as_json:
        print(json.dumps(summary))
        return
    _print(summary)


def _print(summary: dict) -> None:
    table = Table(title="score", show_header=False)
    stats = summary["stats"]
    table.add_row("solutions / problems", f"{summary['solutions']} / {summary['problems']}")
    table.add_row("mean reward (pass rate)", f"{summary['reward_mean']:.4f}")
    table.add_row("statuses", ", ".join(f"{k} {v}" for k, v in sorted(summary["statuses"].items())))
    for k, v in summary.get("pass_at_k", {}).items():
        table.add_row(f"pass@{k}", f"{v:.4f}")
    if "isolation" in stats:
        table.add_row("sandbox", f"isolation {stats['isolation'] or '-'}, {stats.get('sandbox_error', 0)} sandbox errors, "
                                 f"{stats.get('retried', 0)} retried")
        table.add_row("time", f"{stats['seconds']:.2f} s total, {stats['run_seconds_mean'] * 1000:.1f} ms mean per run")
    console.print(table)
