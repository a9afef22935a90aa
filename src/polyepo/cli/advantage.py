"""``polyepo advantage`` and ``polyepo estimators``: inspect advantages of a group by hand."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..io import read_json_or_jsonl
from . import app
from ._common import console, parse_number_list, parse_options, user_errors


def _read_groups(source: str) -> list[dict]:
    """Groups from a JSON array or JSONL file (``-``: stdin); errors name the file and the line."""
    groups = []
    for where, g in read_json_or_jsonl(source):
        if not isinstance(g, dict) or not isinstance(g.get("rewards"), list):
            raise ValueError(f"{where}: each group must be an object with a 'rewards' list (and 'clusters')")
        groups.append(g)
    return groups


def _run_estimators(names, rewards, clusters, set_size, reduction, extra) -> dict[str, list[float]]:
    from ..advantages import NEEDS_CLUSTERS, estimator_options, group_advantages

    out = {}
    for name in names:
        valid = estimator_options(name)
        opts = {k: v for k, v in (("set_size", set_size), ("reduction", reduction)) if k in valid and v is not None}
        opts.update(extra)
        if clusters is None and name in NEEDS_CLUSTERS:
            raise ValueError(f"estimator {name!r} needs --clusters")
        out[name] = group_advantages(name, rewards, clusters, **opts).tolist()
    return out


@app.command()
@user_errors
def advantage(
    source: Annotated[Optional[str], typer.Argument(help="JSON/JSONL file of groups {\"rewards\": [...], \"clusters\": [...]}, or - for stdin.")] = None,
    rewards: Annotated[Optional[str], typer.Option("--rewards", "-r", help="One group's rewards, e.g. 1,0,0,1.")] = None,
    clusters: Annotated[Optional[str], typer.Option("--clusters", "-c", help="Its cluster ids, e.g. 1,2,2,100.")] = None,
    estimator: Annotated[Optional[list[str]], typer.Option("--estimator", "-e", help="Estimator name; repeat to compare several.")] = None,
    all_estimators: Annotated[bool, typer.Option("--all", help="Every estimator that applies, side by side.")] = False,
    set_size: Annotated[Optional[int], typer.Option("--set-size", "-n", help="Set size n for set estimators (default: theirs, 4).")] = None,
    reduction: Annotated[Optional[str], typer.Option(help="sum (seed 002) or mean (the authors' code) for set estimators.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Extra estimator option key=value, e.g. min_distinct=1 or degenerate=[100].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compute the advantages of one group (or of every group in a file) and print them."""
    from ..advantages import ESTIMATORS, NEEDS_CLUSTERS

    if source is not None and rewards is not None:
        raise ValueError("give either a SOURCE file or --rewards, not both")
    if source is not None:
        groups = _read_groups(source)
    elif rewards is not None:
        groups = [{"rewards": parse_number_list(rewards, "--rewards"),
                   "clusters": None if clusters is None else parse_number_list(clusters, "--clusters", int)}]
    else:
        raise ValueError("nothing to compute: pass --rewards 1,0,0,1 [--clusters 1,2,2,3] or a SOURCE file")
    extra = parse_options(option or [])
    results = []
    for g in groups:
        cl = g.get("clusters")
        if all_estimators:
            names = [e for e in ESTIMATORS.names() if e != "set_rl" and (cl is not None or e not in NEEDS_CLUSTERS)]
        else:
            names = estimator or ["poly_epo" if cl is not None else "dr_grpo"]
        results.append({**g, "advantages": _run_estimators(names, g["rewards"], cl, set_size, reduction, extra)})
    if as_json:
        print(json.dumps(results if source is not None else results[0]))
        return
    for k, res in enumerate(results):
        table = Table(title=None if len(results) == 1 else f"group {k}")
        table.add_column("i", justify="right", no_wrap=True)
        table.add_column("reward", justify="right", no_wrap=True)
        if res.get("clusters") is not None:
            table.add_column("cluster", justify="right", no_wrap=True)
        for name in res["advantages"]:
            table.add_column(name, justify="right", no_wrap=True)
        for i, r in enumerate(res["rewards"]):
            row = [str(i), f"{r:g}"]
            if res.get("clusters") is not None:
                row.append(str(res["clusters"][i]))
            row += [_fmt(adv[i], adv) for adv in res["advantages"].values()]
            table.add_row(*row)
        console.print(table)


def _fmt(x: float, column: list[float]) -> str:
    scale = max(1.0, *(abs(v) for v in column))
    return f"{0.0 if abs(x) < 1e-12 * scale else x:+.4f}"  # no "-0.0000" from rounding noise


@app.command()
def estimators() -> None:
    """List the registered advantage estimators, their options and defaults."""
    from ..advantages import ESTIMATORS, NEEDS_CLUSTERS, estimator_options

    table = Table()
    for col in ("name", "clusters", "options (defaults)", "what it computes"):
        table.add_column(col)
    for name in ESTIMATORS.names():
        doc = (ESTIMATORS.get(name).__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v!r}" for k, v in estimator_options(name).items())
        table.add_row(name, "yes" if name in NEEDS_CLUSTERS else "no", opts, doc)
    console.print(table)
