"""``polyepo eval``, ``rescore``, ``metrics`` and ``report``: measure test-time scaling (docs/evaluation.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..evaluate.sampling import SamplingSettings
from . import app
from ._common import OldOutOpt, console, dataclass_options, err_console, old_out, parse_options, user_errors

KOpt = Annotated[Optional[list[int]], typer.Option("--k", "-k", help="Extra k besides the powers of two up to n (repeat); k > n is skipped with a note.")]
FilterBase = Annotated[Optional[Path], typer.Option("--filter-base", help="Base model's results file: keep only the problems it solved --solved times out of --of.")]
Solved = Annotated[str, typer.Option("--solved", help="With --filter-base: inclusive range LOW:HIGH of correct samples (seed 002: 1:12).")]
Of = Annotated[Optional[int], typer.Option("--of", help="With --filter-base: count over the first M samples (seed 002: 16; default: all n).")]


def _filter(base: Optional[Path], solved: str, of: Optional[int]) -> tuple[Optional[list[str]], Optional[str]]:
    """(problem ids, description) of a pass-rate filter, or (None, None) without --filter-base."""
    from ..evaluate import pass_rate_filter

    if base is None:
        return None, None
    try:
        low, high = (int(x) for x in solved.split(":"))
    except ValueError:
        raise ValueError(f"--solved expects LOW:HIGH, e.g. 1:12, got {solved!r}") from None
    return pass_rate_filter(base, low, high, of)


@app.command("eval")
@user_errors
@dataclass_options(SamplingSettings, into="sampling", short={"n": "-n"})
def eval_(
    model: Annotated[str, typer.Argument(help="Bundled model name (toy-paths-base, smollm2-135m ...), model directory, or training run directory.")],
    sampling: dict,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Registered task (default: a run directory's, from its run.yaml; else toy_paths).")] = None,
    split: Annotated[Optional[str], typer.Option("--split", "-s", help="Task split (default: a run directory's eval splits, each to its own file; else test).")] = None,
    task_option: Annotated[Optional[list[str]], typer.Option("--task-option", "-T", help="Task option key=value (repeat), laid over a run's.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first LIMIT problems of the split.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Results file (default: RUN_DIR/eval/... or eval/MODEL/...). An existing one is resumed.")] = None,
    reward: Annotated[Optional[str], typer.Option(help="Reward function (default: a run's, else the task's).")] = None,
    reward_option: Annotated[Optional[list[str]], typer.Option(help="Reward option key=value (repeat).")] = None,
    clusterer: Annotated[Optional[str], typer.Option(help="Clustering backend (default: a run's, else the task's).")] = None,
    cluster_option: Annotated[Optional[list[str]], typer.Option(help="Clusterer option key=value (repeat).")] = None,
    only_correct: Annotated[bool, typer.Option(help="Cluster only correct samples (cheaper with a judge).")] = False,
    correct_threshold: Annotated[float, typer.Option(help="A sample is correct when its reward is >= this.")] = 1.0,
    label: Annotated[Optional[str], typer.Option(help="Name in reports (default: the run's estimator, or the model name).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    out_short: OldOutOpt = None,
) -> None:
    """Sample n answers per problem, score and cluster them, store everything in a results file.

    For a training run directory the task, its options, the splits, the reward and the
    clusterer come from its run.yaml unless given (a note says what was taken from where; a
    given value that contradicts the run is used, with a warning), and so do the sampling
    settings and the limit that `polyepo compare` evaluates it with (n 64, the training
    temperature and completion length, the config's eval section), unless given."""
    from ..evaluate import evaluate, summarize
    from ..evaluate.runner import say
    from ..evaluate.setup import eval_setup

    out = old_out(out, out_short)
    setup = eval_setup(model, task, split, task_options=parse_options(task_option or []), reward=reward,
                       reward_options=parse_options(reward_option or []) or None, clusterer=clusterer,
                       clusterer_options=parse_options(cluster_option or []) or None)
    if out is not None and len(setup.splits) > 1:
        raise ValueError(f"--out names one results file but {model} is evaluated on splits {', '.join(setup.splits)} "
                         "(its run.yaml): give --split, or leave --out out (one file per split in RUN_DIR/eval/)")
    sampling, limit = setup.sampling_from_run(sampling, getattr(sampling, "given", set(sampling)), limit)
    say(setup)
    for one in setup.splits:
        path = evaluate(model, split=one, limit=limit, out=out, only_correct=only_correct,
                        correct_threshold=correct_threshold, label=label, progress=not quiet,
                        **setup.evaluate_kwargs(), **sampling)
        s = summarize(path)
        console.print(f"wrote {path}: {s.problems} problems x {s.n} samples; pass@1 {s.pass_at_k[1].fmt()}, "
                      f"pass@{s.n} {s.pass_at_k[s.n].fmt()}, distinct correct clusters {s.distinct_correct.fmt(2)}",
                      highlight=False)


@app.command()
@user_errors
def rescore(
    results: Annotated[Path, typer.Argument(help="A finished results file.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="New file (default: rewrite RESULTS in place, atomically).")] = None,
    reward: Annotated[Optional[str], typer.Option(help="Reward function (default: the recorded one).")] = None,
    reward_option: Annotated[Optional[list[str]], typer.Option(help="Reward option key=value (repeat).")] = None,
    clusterer: Annotated[Optional[str], typer.Option(help="Clusterer (default: the recorded one).")] = None,
    cluster_option: Annotated[Optional[list[str]], typer.Option(help="Clusterer option key=value (repeat).")] = None,
    only_correct: Annotated[Optional[bool], typer.Option("--only-correct/--all-samples", help="Cluster only correct samples, or all (default: as recorded).")] = None,
    correct_threshold: Annotated[Optional[float], typer.Option(help="Correct when reward >= this (default: as recorded).")] = None,
    what: Annotated[str, typer.Option(help="What to recompute: both, rewards, clusters.")] = "both",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    out_short: OldOutOpt = None,
) -> None:
    """Re-score and/or re-cluster stored samples without sampling again."""
    from ..evaluate import rescore as do_rescore

    out = old_out(out, out_short)

    if what not in ("both", "rewards", "clusters"):
        raise ValueError(f"--what must be one of both, rewards, clusters; got {what!r}")
    path = do_rescore(results, out, reward=reward, reward_options=parse_options(reward_option or []) or None,
                      clusterer=clusterer, clusterer_options=parse_options(cluster_option or []) or None,
                      only_correct=only_correct, correct_threshold=correct_threshold,
                      rewards=what in ("both", "rewards"), clusters=what in ("both", "clusters"), progress=not quiet)
    console.print(f"wrote {path}", highlight=False)


@app.command()
@user_errors
def metrics(
    results: Annotated[Path, typer.Argument(help="A results file of `polyepo eval`.")],
    k: KOpt = None,
    filter_base: FilterBase = None,
    solved: Solved = "1:12",
    of: Of = None,
    ids_out: Annotated[Optional[Path], typer.Option(help="Write the problem ids kept by the filter here, one per line.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples over problems.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the majority@k Monte Carlo.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every number as JSON.")] = False,
) -> None:
    """Print pass@k, distinct strategies, majority@k and best-of-k of a results file, with standard errors."""
    from ..evaluate import summarize

    ids, note = _filter(filter_base, solved, of)
    if ids_out is not None:
        if ids is None:
            raise ValueError("--ids-out needs --filter-base")
        ids_out.write_text("".join(f"{i}\n" for i in ids))
    s = summarize(results, ks=k, problem_ids=ids, bootstrap=bootstrap, seed=seed)
    if as_json:
        print(json.dumps({**s.to_dict(), "filter": note}, default=lambda x: None))
        return
    title = f"{s.label}: {s.task}/{s.split}, {s.problems} problems x n = {s.n}"
    table = Table(title=title + (f"\n{note}" if note else ""))
    for col in ("k", "pass@k", "SE", "boot SE", "distinct@k", "SE", "maj@k", "SE", "best@k", "SE"):
        table.add_column(col, justify="right", no_wrap=True)
    for kk in s.ks:
        cells = [str(kk)]
        for metric, digits in (("pass_at_k", 4), ("distinct_at_k", 2), ("majority_at_k", 4), ("best_of_k", 4)):
            est = getattr(s, metric)
            cells += [f"{est[kk].mean:.{digits}f}", f"{est[kk].se:.{digits}f}"] if est else ["n/a", ""]
            if metric == "pass_at_k":
                cells.append(f"{est[kk].se_boot:.{digits}f}")
        table.add_row(*cells)
    console.print(table)
    console.print(f"distinct correct clusters per prompt (all n): {s.distinct_correct.fmt(2)}; counts: "
                  + ", ".join(f"{key} {v}" for key, v in s.counts.items()), highlight=False)
    for line in s.notes:
        err_console.print(f"note: {line}", highlight=False)


@app.command()
@user_errors
def report(
    runs: Annotated[list[str], typer.Argument(help="Results files or training run directories, optionally LABEL=PATH; one label per method, several runs per label = seeds.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Report directory (default: report).")] = None,
    k: KOpt = None,
    filter_base: FilterBase = None,
    solved: Solved = "1:12",
    of: Of = None,
    split: Annotated[Optional[str], typer.Option(help="Only results of this split (default: the run directories' eval.splits from their run.yaml, else every split found; one report per split in OUT/SPLIT).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", "-t", help="Only results of this task (default: each run directory's task, from its run.yaml).")] = None,
    title: Annotated[str, typer.Option(help="Report title.")] = "polyepo evaluation report",
    out_short: OldOutOpt = None,
) -> None:
    """Compare runs side by side: pass@k curves, distinct strategies, training curves, a table (PNG + Markdown + HTML).

    A results file named is always reported; a run directory brings the results of its task and
    eval splits (from its run.yaml); notes say what was taken from where and what was left out."""
    from ..report import build_reports, select_runs

    out = old_out(out, out_short) or Path("report")

    ids, note = _filter(filter_base, solved, of)
    selection = select_runs(runs, split=split, task=task)
    for line in selection.notes:
        err_console.print(f"note: {line}", highlight=False)
    for path in build_reports(selection, out, ks=k, problem_ids=ids, filter_note=note, title=title):
        console.print(f"wrote {path} and {path.with_suffix('.html')}", highlight=False)
