"""``evaluate``: sample n answers per problem, score, cluster, and store them, resumably."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from ..progress import progress_bar
from ..tasks import load_task
from ..tasks.base import Component
from .results import FORMAT, VERSION, ResultsWriter, compact
from .sampling import SamplingSettings, chunk_seed, make_sampler, resolve_engine
from .scoring import ScoreTally, as_component, cluster_problem, component_dict, correct_of, score_problem
from .setup import EvalSetup, eval_setup
from .summary import log, warn_degenerate_diversity


def model_fingerprint(path: Path) -> str:
    """sha256 over the weight files and config of a model directory (identifies the checkpoint)."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + [path / "config.json"]:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def run_info(spec: str | os.PathLike, model_path: Path) -> dict[str, Any]:
    """Where a model comes from: its training run directory and that run's config, if any."""
    given = Path(spec).expanduser()
    candidates = [given] if given.is_dir() else []
    candidates.append(model_path.parent)
    run_dir = next((c for c in candidates if (c / "run.yaml").is_file() or (c / "log.jsonl").is_file()), None)
    info: dict[str, Any] = {"spec": str(spec), "path": str(model_path.resolve())}
    if run_dir is not None:
        info["run_dir"] = str(run_dir.resolve())
        if (run_dir / "run.yaml").is_file():
            from .setup import read_run_yaml

            cfg = read_run_yaml(run_dir)
            trainer = cfg.get("trainer") or {}
            info["run"] = {"estimator": trainer.get("estimator"), "seed": trainer.get("seed"),
                           "task": cfg.get("task"), "model": cfg.get("model")}
            if cfg.get("label"):  # a compare entry's label (an estimator with options of its own)
                info["run"]["label"] = cfg["label"]
    return info


def default_label(info: dict[str, Any]) -> str:
    run = info.get("run") or {}
    return str(run.get("label") or run.get("estimator") or Path(info["spec"]).name)


def default_out(info: dict[str, Any], task: str, split: str, settings: SamplingSettings) -> Path:
    name = f"{task}-{split}-n{settings.n}-s{settings.seed}.jsonl"
    if "run_dir" in info:
        return Path(info["run_dir"]) / "eval" / name
    return Path("eval") / Path(info["spec"]).name / name


def _components(task_obj: Any, reward: Any, reward_options: Any, clusterer: Any, clusterer_options: Any,
                only_correct: bool) -> tuple[Component, dict[str, Any]]:
    rew = as_component(reward, reward_options, task_obj.reward, "reward")
    clu = as_component(clusterer, clusterer_options, task_obj.clusterer, "clusterer")
    return rew, {**component_dict(clu), "only_correct": bool(only_correct)}


def evaluate(
    model: str | os.PathLike,
    task: str | None = None,
    split: str | None = None,
    *,
    limit: int | None = None,
    out: str | os.PathLike | None = None,
    task_options: dict[str, Any] | None = None,
    reward: str | Component | None = None,
    reward_options: dict[str, Any] | None = None,
    clusterer: str | Component | None = None,
    clusterer_options: dict[str, Any] | None = None,
    only_correct: bool = False,
    correct_threshold: float = 1.0,
    label: str | None = None,
    progress: bool = True,
    **sampling: Any,
) -> Path:
    """Sample ``n`` answers per problem of ``task``/``split``, score, cluster, store; returns the file.

    Resumable: if ``out`` exists and was produced with the same settings, the problems and
    sample chunks already in it are kept and only the missing ones are drawn (with the same
    per-chunk seeds, hence the same samples); different settings are refused.

    Args:
        model: bundled model name, model directory, or training run directory (its ``final/``
            or newest ``checkpoint-N/``), as :func:`polyepo.models.resolve_model`.
        task, split, task_options, limit: the problems (``limit`` = the first that many). With
            ``task`` or ``split`` None they come from the model's training run (its
            ``run.yaml``: the task, its options, reward and clusterer, the one eval split), as
            :func:`polyepo.evaluate.setup.eval_setup` says; outside a run, ``toy_paths`` and ``test``.
        out: results file (default: ``RUN_DIR/eval/...`` for a run, else ``eval/MODEL/...``).
        reward, reward_options: reward function (default: the task's).
        clusterer, clusterer_options: clustering backend (default: the task's).
        only_correct: cluster only the correct samples (cheaper with an LLM judge).
        correct_threshold: a sample is correct when its reward is >= this.
        label: name of this run in reports (default: the run's label, else its estimator, else the model name).
        progress: show a progress bar.
        **sampling: the fields of :class:`SamplingSettings` (``n``, ``temperature``, ``top_p``,
            ``top_k``, ``max_new_tokens``, ``seed``, ``batch_size``, ``engine``), its defaults
            when not given; an unknown name is an error.
    """
    from ..models import resolve_model

    asked = SamplingSettings.from_options(**sampling)  # bad names and values fail before any loading
    if task is None or split is None:
        setup = eval_setup(model, task, split, task_options=task_options, reward=reward,
                           reward_options=reward_options, clusterer=clusterer, clusterer_options=clusterer_options)
        if len(setup.splits) > 1:
            raise ValueError(f"{model} is evaluated on splits {', '.join(setup.splits)} ({setup.notes[0]}): "
                             "give one split (one results file per split)")
        say(setup, progress)
        return evaluate(model, split=setup.splits[0], limit=limit, out=out, only_correct=only_correct,
                        correct_threshold=correct_threshold, label=label, progress=progress,
                        **setup.evaluate_kwargs(), **sampling)
    task_obj = load_task(task, **(task_options or {}))
    rows = task_obj.rows(split, limit)
    if not rows:
        raise ValueError(f"task {task!r} split {split!r} has no problems")
    model_path = resolve_model(model)
    engine, note = resolve_engine(asked.engine)
    max_new_tokens = asked.max_new_tokens or int(getattr(task_obj, "max_new_tokens", 256))
    settings = dataclasses.replace(asked, engine=engine, max_new_tokens=max_new_tokens)
    rew, clu = _components(task_obj, reward, reward_options, clusterer, clusterer_options, only_correct)
    info = run_info(model, model_path)
    header = {
        "kind": "header", "format": FORMAT, "version": VERSION, "label": label or default_label(info),
        "sampling": settings.to_dict(), "model": {"fingerprint": model_fingerprint(model_path)},
        "model_info": info,
        "task": {"name": task, "options": dict(task_options or {}), "split": split, "limit": limit,
                 "problems": len(rows)},
        "reward": component_dict(rew), "clusterer": clu, "correct_threshold": float(correct_threshold),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "versions": _versions(),
    }
    out = Path(out) if out is not None else default_out(info, task, split, settings)
    if note and progress:
        print(f"note: {note}")
    with ResultsWriter(out, header) as writer:
        _run(writer, rows, settings, model_path, rew, clu, progress)
    warn_degenerate_diversity(compact(out))
    return out


def say(setup: EvalSetup, notes: bool = True) -> None:
    """Print where an evaluation's task and splits came from (standard error), and log what
    contradicts the run."""
    if notes:
        for line in setup.notes:
            print(f"note: {line}", file=sys.stderr, flush=True)
    for line in setup.flags:
        log.warning("warning: %s", line)


def _run(writer: ResultsWriter, rows: list[dict[str, Any]], settings: SamplingSettings, model_path: Path,
         rew: Component, clu: dict[str, Any], progress: bool) -> None:
    """Draw the missing chunks, then score + cluster each problem once all its samples exist."""
    from ..clustering import make_clusterer
    from ..rewards import make_reward

    done = {p["problem_id"] for p in writer.results.problems}
    chunks = writer.results.chunks
    todo = [(i, row) for i, row in enumerate(rows) if row["problem_id"] not in done]
    if not todo:
        return
    reward_fn = make_reward(rew.name, **rew.options)
    clusterer = make_clusterer(clu["name"], **clu["options"])
    sampler = None
    threshold = float(writer.results.header.get("correct_threshold", 1.0))
    tally = ScoreTally(len(rows), threshold, writer.results.problems)
    with progress_bar(progress) as bar:
        bar_task = bar.add_task("sampling", total=len(rows) * settings.n, completed=len(done) * settings.n,
                                metrics=tally.text())
        for index, row in todo:
            pid = row["problem_id"]
            have = chunks.get(pid, {})
            for start, size in settings.chunks():
                if start in have and len(have[start]["completions"]) == size:
                    bar.advance(bar_task, size)
                    continue
                sampler = sampler or make_sampler(settings.engine, model_path)
                s = sampler.sample(row["prompt"], size, chunk_seed(settings.seed, pid, start), settings)
                have[start] = {"kind": "samples", "problem_id": pid, "start": start, "completions": s.completions,
                               "num_tokens": s.num_tokens, "finished": s.finished}
                writer.write(have[start])
                bar.advance(bar_task, size)
            prob = _scored(index, row, have, settings, reward_fn, clusterer, clu["only_correct"], threshold)
            writer.write(prob)
            tally.add(prob)
            bar.update(bar_task, metrics=tally.text())


def _scored(index: int, row: dict[str, Any], have: dict[int, dict[str, Any]], settings: SamplingSettings,
            reward_fn: Any, clusterer: Any, only_correct: bool, threshold: float) -> dict[str, Any]:
    """The ``problem`` record of a problem whose chunks are all drawn."""
    parts = [have[start] for start, _ in settings.chunks()]
    prob: dict[str, Any] = {
        "kind": "problem", "index": index, "problem_id": row["problem_id"], "prompt": row["prompt"],
        "columns": {k: v for k, v in row.items() if k not in ("prompt", "problem_id")},
        "completions": [c for p in parts for c in p["completions"]],
        "num_tokens": [t for p in parts for t in p["num_tokens"]],
        "finished": [f for p in parts for f in p["finished"]],
    }
    prob["rewards"], prob["reward_info"] = score_problem(reward_fn, prob)
    prob["clusters"], prob["cluster_info"] = cluster_problem(
        clusterer, prob, correct_of(prob["rewards"], threshold), only_correct)
    return prob


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("polyepo", "torch", "transformers", "vllm"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
