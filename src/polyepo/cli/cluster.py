"""``polyepo cluster``, ``polyepo cluster-eval`` and ``polyepo clusterers``: strategy clusters by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..io import read_json_or_jsonl, read_text
from ..progress import progress_bar
from . import app
from ._common import console, fail, parse_options, user_errors

BackendOpt = Annotated[str, typer.Option("--backend", "-b", help="Clusterer name (see `polyepo clusterers`).")]
OptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--option", "-o", help="Backend option key=value, e.g. prompt=math, model=gpt-4.1-mini, "
    "on_failure=fallback:python_ast, threshold=0.3.")]


def read_groups(source: str) -> list[dict[str, Any]]:
    """Groups from a JSONL / JSON array / YAML file, or ``-`` for JSONL on stdin (errors name the line)."""
    if source.endswith((".yaml", ".yml")):
        import yaml

        located = [(f"{source}: group {i}", g) for i, g in enumerate(yaml.safe_load(read_text(source)) or [])]
    else:
        located = read_json_or_jsonl(source)
    for where, g in located:
        if not isinstance(g, dict) or not isinstance(g.get("responses"), list):
            raise ValueError(f"{where}: each group must be an object with a 'responses' list (and a 'prompt')")
    return [g for _, g in located]


def _cluster_all(clusterer: Any, groups: list[dict[str, Any]], chunk: int) -> list[Any]:
    from ..judge import JudgeFailedError

    try:
        return _cluster_chunks(clusterer, groups, chunk)
    except JudgeFailedError as e:
        raise fail(str(e), code=1) from None


def _cluster_chunks(clusterer: Any, groups: list[dict[str, Any]], chunk: int) -> list[Any]:
    results: list[Any] = []
    with progress_bar(len(groups) > chunk, sys.stderr, transient=True) as bar:
        task = bar.add_task("clustering", total=len(groups))
        for start in range(0, len(groups), chunk):
            results += clusterer.cluster_many(groups[start : start + chunk])
            bar.advance(task, len(groups[start : start + chunk]))
    return results


@app.command()
@user_errors
def cluster(
    source: Annotated[str, typer.Argument(help="JSONL (or JSON/YAML) of groups {\"prompt\", \"responses\", "
                                          "optional \"rewards\" or \"correct\"}, or - for stdin.")],
    backend: BackendOpt = "python_ast",
    option: OptionOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the groups with 'clusters' and "
                                                "'cluster_meta' added, as JSONL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSONL results instead of a table.")] = False,
    chunk: Annotated[int, typer.Option(help="Groups handed to the backend at once (judge: concurrently).")] = 64,
) -> None:
    """Cluster the responses of every group with one backend and print (or save) the ids."""
    from ..clustering import aggregate_metrics, group_metrics, make_clusterer

    groups = read_groups(source)
    clusterer = make_clusterer(backend, **parse_options(option or []))
    results = _cluster_all(clusterer, groups, max(1, chunk))
    rows, metrics = [], []
    for g, res in zip(groups, results):
        m = group_metrics(res, g.get("correct"), rewards=g.get("rewards"))
        metrics.append(m)
        meta = {"backend": res.backend, "cache_hit": res.cache_hit, "failed": res.failed, "policy": res.policy,
                "error": res.error, "requests": res.requests, "retries": res.retries, "reasks": res.reasks}
        rows.append({**g, "clusters": res.ids, "cluster_meta": meta})
    if out is not None:
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = aggregate_metrics(metrics)
    stats = clusterer.stats() if hasattr(clusterer, "stats") else None
    if as_json:
        for r in rows:
            print(json.dumps({"clusters": r["clusters"], "cluster_meta": r["cluster_meta"]}))
        return
    _print_clusters(rows, metrics)
    console.print("summary: " + ", ".join(f"{k}={v:g}" for k, v in summary.items()), highlight=False)
    if stats:
        console.print("judge: " + ", ".join(f"{k}={v}" for k, v in stats.items()), highlight=False)


def _print_clusters(rows: list[dict[str, Any]], metrics: list[dict[str, float]]) -> None:
    table = Table()
    for col in ("group", "N", "clusters", "distinct", "distinct correct", "degenerate", "status"):
        table.add_column(col, justify="right" if col != "clusters" else "left")
    for k, (r, m) in enumerate(zip(rows, metrics)):
        meta = r["cluster_meta"]
        status = f"failed -> {meta['policy']}" if meta["failed"] else "cache" if meta["cache_hit"] else "ok"
        dc = f"{m['distinct_correct']:g}" if "distinct_correct" in m else "-"
        table.add_row(str(r.get("task_id") or r.get("id") or k), str(len(r["clusters"])),
                      " ".join(map(str, r["clusters"])), f"{m['distinct']:g}", dc, f"{m['degenerate']:g}", status)
    console.print(table)


@app.command("cluster-eval")
@user_errors
def cluster_eval(
    source: Annotated[str, typer.Argument(help="Labelled groups (JSONL/JSON/YAML with 'labels'), or a "
                                          "built-in set.")] = "humaneval_strategies",
    backend: BackendOpt = "python_ast",
    option: OptionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
) -> None:
    """Agreement of a backend with labelled strategies: adjusted Rand index, pairwise precision/recall."""
    from ..clustering import make_clusterer
    from ..clustering.evaluate import evaluate_clusterer, load_labelled
    from ..judge import JudgeFailedError

    groups = load_labelled(source)
    clusterer = make_clusterer(backend, **parse_options(option or []))
    try:
        result = evaluate_clusterer(clusterer, groups, degenerate=getattr(clusterer, "degenerate", 100))
    except JudgeFailedError as e:
        raise fail(str(e), code=1) from None
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"{backend} on {source}")
    for col in ("group", "labels", "clusters", "ARI", "pairs tp/fp/fn"):
        table.add_column(col, justify="left" if col in ("labels", "clusters") else "right")
    for k, r in enumerate(result["groups"]):
        table.add_row(str(r["task_id"] or k), " ".join(map(str, r["labels"])), " ".join(map(str, r["ids"])),
                      f"{r['ari']:.3f}", f"{r['tp']}/{r['fp']}/{r['fn']}")
    console.print(table)
    s = result["summary"]
    console.print(
        f"ARI {s['ari']:.3f} | pairwise precision {s['pair_precision']:.3f} recall {s['pair_recall']:.3f} "
        f"F1 {s['pair_f1']:.3f} | degenerate precision {s['degenerate_precision']:.3f} recall "
        f"{s['degenerate_recall']:.3f} | distinct-count MAE {s['distinct_mae']:.2f} | failed groups {s['failed']}",
        highlight=False,
    )


@app.command()
def clusterers() -> None:
    """List the registered clustering backends."""
    from ..clustering import CLUSTERERS

    table = Table()
    table.add_column("name")
    table.add_column("what it does")
    for name in CLUSTERERS.names():
        doc = (CLUSTERERS.get(name).__doc__ or "").strip().splitlines()[0]
        table.add_row(name, doc)
    console.print(table)
