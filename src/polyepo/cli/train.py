"""``polyepo train``, ``polyepo compare``, ``polyepo models`` and ``polyepo tasks``."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from . import app
from ._common import console, fail, quiet_libraries, user_errors

ConfigOpt = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML run config (see examples/).")]
OverridesArg = Annotated[Optional[list[str]], typer.Argument(
    help="Overrides key=value, dotted for sections: trainer.max_steps=50 model=smollm2-135m.")]


@app.command()
@user_errors
def train(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and push one group through generation, reward, clustering and the advantage; no training.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue from the newest checkpoint in output_dir.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete a non-empty output_dir first.")] = False,
    list_trainer_keys: Annotated[bool, typer.Option("--list-trainer-keys", help="List every trainer.* key with its default and help.")] = False,
) -> None:
    """Train a model with Poly-EPO (or any estimator) on TRL's GRPOTrainer."""
    from ..workflow.config import load_run_config

    quiet_libraries()
    if list_trainer_keys:
        _print_trainer_keys()
        return
    from ..judge.policy import JudgeFailedError, JudgeUnavailableError

    cfg = load_run_config(config, overrides or [])
    if dry_run:
        from ..workflow.run import dry_run as run_dry

        try:
            _print_dry_run(run_dry(cfg))
        except JudgeFailedError as e:  # the judge is down, or its policy is raise
            raise fail(f"dry run: {e}", code=1) from None
        return
    from ..workflow.run import train as run_train

    try:
        out = run_train(cfg, resume=resume, overwrite=overwrite)
    except KeyboardInterrupt:
        raise fail("interrupted" + _how_to_continue(cfg, config, overrides or []), code=130) from None
    except JudgeUnavailableError as e:  # the judge stayed down past max_wait_s (on_failure=wait)
        raise fail(f"{e.summary} Training stopped" + _how_to_continue(cfg, config, overrides or [], "once the "
                   "judge answers again") + " (the judge's max_wait_s, in clusterer_options or reward_options, sets how "
                   "long a run waits)",
                   code=JUDGE_UNAVAILABLE_EXIT) from None
    except JudgeFailedError as e:  # a judge policy of raise
        raise fail(f"{e} Training stopped" + _how_to_continue(cfg, config, overrides or []), code=1) from None
    console.print(f"[green]done[/]: model in {out / 'final'}, logs in {out / 'log.jsonl'}")


#: exit status of a run stopped because its judge stayed down (sysexits' EX_TEMPFAIL: try again later)
JUDGE_UNAVAILABLE_EXIT = 75


def _how_to_continue(cfg, config: str | None, overrides: list[str], when: str = "") -> str:
    """Where a stopped run stands and the command that continues it (the same config path and
    overrides as this command), as the end of a sentence."""
    import shlex

    from ..models import latest_checkpoint

    out = cfg.resolved_output_dir()
    ckpt = latest_checkpoint(out) if out.is_dir() else None
    command = shlex.join(["polyepo", "train", *(["--config", config] if config else []), *overrides])
    when = f" {when}" if when else ""
    if ckpt is None:
        return (f" before the first checkpoint of {out}; start afresh{when} with: {command} --overwrite "
                "(trainer.save_steps sets how often checkpoints are written)")
    fresh = "" if (ckpt / "optimizer.pt").is_file() else " (it holds weights only: the optimizer starts afresh)"
    return f"; the newest checkpoint is {ckpt}. Continue from it{when} with: {command} --resume{fresh}"


def _print_dry_run(info: dict) -> None:
    console.print(f"[bold]dry run OK[/]: task {info['task']} ({info['rows']} training rows), model {info['model']} "
                  f"({info['parameters']:,} parameters), reward {info['reward']}, clusterer {info['clusterer']}, "
                  f"estimator {info['estimator']}; output_dir {info['output_dir']}")
    console.print(f"prompt: {info['prompt'][:300]!r}", highlight=False)
    table = Table("i", "completion", "reward", "cluster", "advantage")
    for i, comp in enumerate(info["completions"]):
        cl = "-" if info["clusters"] is None else str(info["clusters"][i])
        table.add_row(str(i), repr(comp[:80]), f"{info['rewards'][i]}", cl, f"{info['advantages'][i]:+.4f}")
    console.print(table)
    m = info.get("metrics", {})
    shown = ("unscorable", "groups_singleton", "cluster_failures", "clusters_distinct", "clusters_distinct_correct")
    console.print("group step: " + ", ".join(f"{k} {m['polyepo/' + k]:g}" for k in shown if "polyepo/" + k in m),
                  highlight=False)


def _print_trainer_keys() -> None:
    from dataclasses import MISSING
    from pathlib import Path

    from ..workflow.config import trainer_fields
    from ..workflow.run import trainer_defaults

    ours = trainer_defaults(Path("."))
    ours.pop("output_dir")  # the run config's top-level output_dir
    table = Table("key", "default", "help", title="trainer.* keys; a default marked * is polyepo train's (TRL's in brackets)")
    for name, f in sorted(trainer_fields().items()):
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else "")
        shown = f"{ours[name]!r} * ({default!r})" if name in ours and ours[name] != default else repr(default)
        table.add_row(name, shown, (f.metadata or {}).get("help", "")[:160])
    console.print(table)


@app.command()
@user_errors
def compare(
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    estimators: Annotated[Optional[str], typer.Option(help="Comma-separated estimators to train (each at the config's settings); default: the config's estimators list, else dr_grpo,poly_epo.")] = None,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    resume: Annotated[bool, typer.Option(help="Skip runs whose final model exists; resume interrupted ones.")] = True,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Evaluate the base model and every run after training, then build the report.")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every run's settings and the eval section, then push one group through each estimator (first seed); no training.")] = False,
) -> None:
    """Train the same config with several estimators x seeds (only the advantage differs), then evaluate and report."""
    quiet_libraries()
    names = None if estimators is None else [e.strip() for e in estimators.split(",") if e.strip()]
    seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    if dry_run:
        _compare_dry_run(config, overrides or [], names, seed_list, evaluate)
        return
    from ..judge.policy import JudgeUnavailableError
    from ..workflow.compare import run_compare

    again = ("run the same command again: finished runs are skipped and interrupted ones resume from their "
             "newest checkpoint")
    try:
        out = run_compare(config, overrides or [], names, seed_list, resume=resume, evaluate=evaluate)
    except KeyboardInterrupt:
        raise fail(f"interrupted; {again}", code=130) from None
    except JudgeUnavailableError as e:
        raise fail(f"{e.summary} Stopped; once the judge answers again, {again}", code=JUDGE_UNAVAILABLE_EXIT) from None
    console.print(f"[green]done[/]: {out}")


def _compare_dry_run(config: str | None, overrides: list[str], names: list[str] | None, seeds: list[int], evaluate: bool) -> None:
    from ..workflow.compare import plan_runs
    from ..workflow.config import load_run_config
    from ..workflow.run import dry_run

    base = load_run_config(config, overrides)
    runs = plan_runs(base, names, seeds)  # every (estimator, seed) config is checked here
    if evaluate:
        from ..workflow.compare_eval import eval_settings

        s = eval_settings(base)
        console.print(f"eval: splits {', '.join(s['splits'])}, n = {s['sampling']['n']}, limit {s['limit']}, the base model and every run")
    first = True
    width = max(len(cfg.resolved_label()) for cfg in runs)
    for cfg in runs[::len(seeds)]:  # one group through each entry, with its options (the first seed's)
        info = dry_run(cfg)
        if first:
            console.print(f"one group of {info['task']}: {info['prompt'][:120]!r}", highlight=False)
            console.print(f"  rewards   {' '.join(f'{r:g}' for r in info['rewards'])}\n  clusters  "
                          + ("-" if info["clusters"] is None else " ".join(map(str, info["clusters"]))), highlight=False)
            first = False
        adv = info["advantages"]  # the group step's: with the estimator's batch step and state, if any
        console.print(f"  {cfg.resolved_label():<{width}} {' '.join(f'{a:+.3f}' for a in adv)}   -> {info['output_dir']}",
                      highlight=False, soft_wrap=True)
    console.print(f"[bold]dry run OK[/]: {len(runs)} runs ({len(runs) // len(seeds)} estimator entries x {len(seeds)} seed{'s' if len(seeds) > 1 else ''}), "
                  f"model {base.model}, task {base.task}")


@app.command()
@user_errors
def models(
    build: Annotated[Optional[str], typer.Option(help="Build (or rebuild) this bundled model into the cache now.")] = None,
) -> None:
    """List the bundled models (all offline) and whether they are built in the cache."""
    from ..models import MODELS, cache_dir, is_model_dir, resolve_model

    if build:
        path = resolve_model(build, rebuild=True)
        console.print(f"built {build} -> {path}")
    table = Table("name", "built", "what it is")
    for name in MODELS.names():
        built = is_model_dir(cache_dir() / "models" / name)
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()[0]
        table.add_row(name, "yes" if built else "on first use", doc)
    console.print(table)
    console.print(f"cache: {cache_dir()} (set POLYEPO_CACHE to move it)")


@app.command()
@user_errors
def tasks(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the registered tasks with their splits, reward and clusterer."""
    from ..tasks import TASKS

    rows = []
    for name in TASKS.names():
        factory = TASKS.get(name)
        summary = (factory.__doc__ or "").strip().splitlines()[0]
        try:
            task = factory()
            rows.append({"name": name, "splits": list(task.splits), "reward": task.reward.name,
                         "clusterer": task.clusterer.name if task.clusterer else None, "about": summary})
        except (ValueError, TypeError, ImportError) as e:  # tasks that need options (files) or packages
            rows.append({"name": name, "splits": [], "reward": getattr(factory, "default_reward", None) or "-",
                         "clusterer": getattr(factory, "default_clusterer", None) or "-", "about": f"{summary} ({e})"})
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("task", "splits", "reward", "clusterer", "about")
    for r in rows:
        table.add_row(r["name"], ", ".join(r["splits"]) or "(from options)", r["reward"], str(r["clusterer"]), r["about"])
    console.print(table)
