"""``polyepo rubric build`` and ``polyepo rubric score``: rubric rewards by hand."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..io import read_json_or_jsonl, read_text
from . import app
from ._common import console, fail, parse_options, user_errors

rubric_app = typer.Typer(help="Rubric rewards (ExpRL): build rubrics from reference solutions, score responses.",
                         no_args_is_help=True)
app.add_typer(rubric_app, name="rubric")

OptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--option", "-o", help="Rubric reward or judge option key=value, e.g. model=gpt-4.1-mini, "
    "rubric_dir=rubrics, on_failure=none, verifiable=math_answer (see docs/rubric.md).")]


def read_records(source: str) -> list[dict[str, Any]]:
    """Objects from a JSONL, JSON-array or YAML file (errors name the file and the line)."""
    if source.endswith((".yaml", ".yml")):
        import yaml

        records = yaml.safe_load(read_text(source))
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"{source}: expected a list of objects")
        return records
    records = []
    for where, r in read_json_or_jsonl(source):
        if not isinstance(r, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(r).__name__}")
        records.append(r)
    return records


def _problems(source: str | None, task: str | None, task_option: list[str]) -> list[Any]:
    from ..rewards.rubric import Problem
    from ..tasks import load_task

    if (source is None) == (task is None):
        raise ValueError("give either a file of problems or --task NAME")
    if task is not None:
        t = load_task(task, **parse_options(task_option))
        records = t.rows(t.splits[0])
    else:
        records = read_records(source or "")
    out, seen = [], set()
    for k, r in enumerate(records):
        if not r.get("reference"):
            raise ValueError(f"problem {k} ({r.get('problem_id', '?')}) has no 'reference'")
        pid = str(r.get("problem_id") or f"problem-{k}")
        if pid not in seen:
            seen.add(pid)
            out.append(Problem(pid, str(r.get("problem") or r.get("prompt") or ""), str(r["reference"])))
    return out


@rubric_app.command("build")
@user_errors
def build(
    source: Annotated[Optional[str], typer.Argument(help="JSONL/JSON/YAML of {\"problem_id\", \"problem\", "
                                                    "\"reference\"}; or use --task.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Build for a registered task's problems instead.")] = None,
    task_option: Annotated[Optional[list[str]], typer.Option(help="Task option key=value.")] = None,
    option: OptionOpt = None,
    force: Annotated[bool, typer.Option(help="Build again even where a rubric file exists.")] = False,
) -> None:
    """Write a rubric file per problem into rubric_dir (existing files are kept unless --force)."""
    from ..rewards import make_reward

    problems = _problems(source, task, task_option or [])
    reward = make_reward("rubric", **parse_options(option or []))
    with console.status(f"building {len(problems)} rubric(s)"):
        resolved = reward.build(problems, rebuild=force)
    table = Table()
    for col in ("problem", "status", "outcome", "process", "file"):
        table.add_column(col)
    for p, res in zip(problems, resolved):
        r = res.rubric
        status = "failed" if res.error else res.how + (" (stale)" if res.stale else "")
        table.add_row(p.problem_id, status, str(sum(i.kind == "outcome" for i in r.items)) if r else "-",
                      str(sum(i.kind == "process" for i in r.items)) if r else "-",
                      str(reward.book.store.path_for(p.problem_id)) if r else (res.error or ""))
    console.print(table)
    failed = sum(res.error is not None for res in resolved)
    if failed:
        raise fail(f"{failed} of {len(problems)} rubric(s) could not be built", code=1)


@rubric_app.command("score")
@user_errors
def score(
    source: Annotated[str, typer.Argument(help="JSONL/JSON/YAML of {\"problem_id\", \"problem\", \"reference\", "
                                          "\"responses\": [...] (or \"response\"), optional \"rubric\", \"answer\", ...}.")],
    option: OptionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON result per response.")] = False,
) -> None:
    """Score responses against their problems' rubrics (built first where missing)."""
    from ..judge import JudgeFailedError
    from ..rewards import make_reward

    records = read_records(source)
    prompts, completions, columns = [], [], {}
    keys = sorted({k for r in records for k in r if k not in ("responses", "response", "prompt")})
    for r in records:
        responses = r.get("responses", [r.get("response", "")])
        for text in responses:
            prompts.append(r.get("prompt") or r.get("problem") or "")
            completions.append(text)
            for k in keys:
                columns.setdefault(k, []).append(r.get(k))
    if not completions:
        raise ValueError(f"{source}: no responses to score")
    reward = make_reward("rubric", **parse_options(option or []))
    try:
        with console.status(f"scoring {len(completions)} response(s)"):
            rewards = reward(prompts, completions, **columns)
    except JudgeFailedError as e:
        raise fail(str(e), code=1) from None
    results = reward.last_results
    if as_json:
        for pid, value, res in zip(columns.get("problem_id", [None] * len(rewards)), rewards, results):
            print(json.dumps({"problem_id": pid, "reward": value, "status": res.status, "outcome": res.outcome,
                              "process": res.process, "verdicts": res.verdicts, "echo": bool(res.echo and res.echo.flagged),
                              "unsupported": res.unsupported, "error": res.error}))
        return
    table = Table()
    for col in ("problem", "reward", "outcome", "process", "verdicts", "echo", "status"):
        table.add_column(col, justify="left" if col in ("problem", "verdicts", "status") else "right")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for pid, value, res in zip(columns.get("problem_id", ["?"] * len(rewards)), rewards, results):
        verdicts = " ".join(f"{i}:{v}" for i, v in res.verdicts.items())  # met | partial | missed
        table.add_row(str(pid), fmt(value), fmt(res.outcome), fmt(res.process), verdicts,
                      "yes" if res.echo and res.echo.flagged else "", res.status + (f": {res.error}" if res.error else ""))
    console.print(table)
    console.print(" ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in reward.last_stats.items()),
                  highlight=False)
