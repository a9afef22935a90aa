"""``polyepo advantage`` and ``polyepo estimators``: inspect advantages of a group by hand."""

from __future__ import annotations

import itertools
import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..advantages import SHARED_OPTIONS
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


def _batch(groups: list[dict]) -> tuple[list[float], list[int] | None, list[int], list[str]]:
    """The groups of a file as one batch: rewards, clusters (None unless every group has them),
    group sizes, and one prompt key per rollout (``prompt_key``, else ``prompt``, else "-")."""
    rewards: list[float] = []
    clusters: list[int] | None = []
    sizes, keys = [], []
    for k, g in enumerate(groups):
        r, c = list(g["rewards"]), g.get("clusters")
        if c is not None and len(c) != len(r):
            where = "" if len(groups) == 1 else f"group {k}: "
            raise ValueError(f"{where}clusters has length {len(c)} but rewards has length {len(r)}")
        rewards += r
        sizes.append(len(r))
        keys += [str(g.get("prompt_key", g.get("prompt", "-")))] * len(r)
        clusters = None if c is None or clusters is None else clusters + list(c)
    return rewards, clusters, sizes, keys


def _run_estimators(names, groups, set_size, reduction, extra) -> list[dict[str, list[float]]]:
    """Every estimator over the whole input as one batch (batch hooks see all groups; the
    historical ``outcome_explore`` counts answers across the groups, in file order)."""
    from ..advantages import (
        NEEDS_CLUSTERS,
        AnswerHistory,
        compute_advantages,
        estimator_options,
        runtime_options,
    )

    rewards, clusters, sizes, keys = _batch(groups)
    bounds = [0, *itertools.accumulate(sizes)]
    out: list[dict[str, list[float]]] = [{} for _ in groups]
    for name in names:
        valid = estimator_options(name)
        opts = {k: v for k, v in (("set_size", set_size), ("reduction", reduction)) if k in valid and v is not None}
        opts.update(extra)
        if "history" in runtime_options(name):
            opts.setdefault("history", AnswerHistory())
        if clusters is None and name in NEEDS_CLUSTERS:
            raise ValueError(f"estimator {name!r} needs --clusters" + ("" if len(groups) == 1 else " in every group"))
        adv = compute_advantages(rewards, clusters, group_sizes=sizes, estimator=name, prompt_keys=keys, **opts)
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            out[k][name] = adv[a:b].tolist()
    return out


@app.command()
@user_errors
def advantage(
    source: Annotated[Optional[str], typer.Argument(help="JSON/JSONL file of groups {\"rewards\": [...], \"clusters\": [...], \"prompt_key\": ...}, or - for stdin.")] = None,
    rewards: Annotated[Optional[str], typer.Option("--rewards", "-r", help="One group's rewards, e.g. 1,0,0,1.")] = None,
    clusters: Annotated[Optional[str], typer.Option("--clusters", "-c", help="Its cluster ids, e.g. 1,2,2,100.")] = None,
    estimator: Annotated[Optional[list[str]], typer.Option("--estimator", "-e", help="Estimator name; repeat to compare several.")] = None,
    all_estimators: Annotated[bool, typer.Option("--all", help="Every estimator that applies, side by side.")] = False,
    set_size: Annotated[Optional[int], typer.Option("--set-size", "-n", help=SHARED_OPTIONS["set_size"] + " Default: the estimator's.")] = None,
    reduction: Annotated[Optional[str], typer.Option(help=SHARED_OPTIONS["reduction"] + " Default: the estimator's.")] = None,
    option: Annotated[Optional[list[str]], typer.Option("--option", "-o", help="Extra estimator option key=value, e.g. min_distinct=1 or degenerate=[100].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compute the advantages of one group (or of every group in a file, as one batch) and print them.

    A file's groups form one batch: an estimator with a batch step (reinforce_pp_baseline)
    normalises over all of them, and outcome_explore's historical variant
    (-o variant=historical) counts answers across them in file order, per prompt_key
    (or prompt) of each group.
    """
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
    clustered = all(g.get("clusters") is not None for g in groups)
    if all_estimators:
        names = [e for e in ESTIMATORS.names() if e != "set_rl" and (clustered or e not in NEEDS_CLUSTERS)]
    else:
        names = estimator or ["poly_epo" if clustered else "dr_grpo"]
    advantages = _run_estimators(names, groups, set_size, reduction, extra)
    results = [{**g, "advantages": adv} for g, adv in zip(groups, advantages)]
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
    """List the registered advantage estimators, their options and defaults (docs/estimators.md)."""
    from ..advantages import ESTIMATORS, NEEDS_CLUSTERS, batch_hook, estimator_options, runtime_options

    table = Table()
    for col in ("name", "clusters", "batch step", "options (defaults)", "what it computes"):
        table.add_column(col)
    for name in ESTIMATORS.names():
        doc = (ESTIMATORS.get(name).__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v!r}" for k, v in estimator_options(name).items())
        runtime = sorted(runtime_options(name))
        if runtime:
            opts += f"; at run time: {', '.join(runtime)}"
        table.add_row(name, "yes" if name in NEEDS_CLUSTERS else "no", "yes" if batch_hook(name) else "no", opts, doc)
    console.print(table)
    shared = Table("shared option", "meaning")
    for name, meaning in SHARED_OPTIONS.items():
        shared.add_row(name, meaning)
    console.print(shared)
