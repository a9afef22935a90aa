"""The TRL trainer's clustering of a step: beside the rewards, once, and stopped on every rank together.

:class:`PolyEPOTrainer` (:mod:`polyepo.train.trl`) calls :func:`start_clustering` just before
TRL's reward functions run and :func:`finish_clustering` just after, so that the judge (or any
clusterer) and the rewards (a sandbox, a rubric judge) wait on their machines at the same
time:

1. :func:`start_clustering` (every process): the prompts, completion texts and per-row columns
   of the whole generation batch are gathered; the main process starts clustering each
   complete group on a background thread (:class:`polyepo.groups.PendingClusters`;
   ``overlap_clustering=False`` defers it to step 2, the sequential order).
2. :func:`finish_clustering` (every process): the main process waits for the results, then
   broadcasts them, or the failure, to every process. Every process then raises together: a
   clusterer error stops all of them (none is left waiting in a collective), and
   :class:`~polyepo.judge.JudgeUnavailableError` (the judge stayed down past ``max_wait_s``
   under ``on_failure=wait``) first saves a checkpoint to resume from (unless
   ``save_strategy="no"``), then raises with a message naming it.

While the main process waits out a judge outage, the other processes wait in that broadcast,
which times out after ``ddp_timeout``: :func:`resolve_ddp_timeout` sets it above the judge's
``max_wait_s`` when it is unset, and refuses a configured one that is shorter.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list, gather_object

from ...clustering import ClusterResult
from ...clustering.base import Group, prompt_text
from ...clustering.judge import wait_limit_s
from ...groups import PendingClusters
from ...judge.policy import JudgeUnavailableError
from ...rewards.extract import completion_text

#: Seconds ``ddp_timeout`` must exceed the judge's ``max_wait_s`` by: the rest of a step's
#: clustering, around the outage.
DDP_WAIT_MARGIN_S = 300


def _default_ddp_timeout() -> int:
    from transformers import TrainingArguments

    return TrainingArguments.ddp_timeout


def wait_limits(clusterer: Any = None, clusterer_options: dict[str, Any] | None = None,
                reward_funcs: Any = ()) -> list[float]:
    """How long each judge of a run may pause a step under ``on_failure=wait``: the clusterer's
    (a name with its options, or a built clusterer) and each reward function's (``wait_limit_s``)."""
    if isinstance(clusterer, str) or clusterer is None:
        limits = [wait_limit_s(clusterer, clusterer_options)]
    else:
        limits = [getattr(clusterer, "wait_limit_s", None)]
    limits += [getattr(f, "wait_limit_s", None) for f in reward_funcs]
    return [float(x) for x in limits if x is not None]


def resolve_ddp_timeout(ddp_timeout: int | None, limits: list[float]) -> int:
    """``ddp_timeout`` for a run whose judges may pause a step for ``limits`` seconds
    (:func:`wait_limits`): unset (None) -> transformers' default, raised to the longest +
    :data:`DDP_WAIT_MARGIN_S` when that is longer; set -> kept, or ``ValueError`` when shorter."""
    limit = max(limits, default=None)
    need = None if limit is None else math.ceil(limit + DDP_WAIT_MARGIN_S)
    if ddp_timeout is None:
        return max(_default_ddp_timeout(), need or 0)
    if need is not None and ddp_timeout < need:
        raise ValueError(
            f"ddp_timeout={ddp_timeout} s is too short for a judge's on_failure=wait with max_wait_s={limit:g} s: "
            "in a multi-process run the other processes wait for the waiting one in a collective, which would "
            f"time out (and kill the run) before the judge's wait ends. Set ddp_timeout >= {need} "
            f"(max_wait_s + {DDP_WAIT_MARGIN_S} s), lower the judge's max_wait_s (clusterer_options or "
            "reward_options), or leave ddp_timeout unset (it is then raised as needed)")
    return int(ddp_timeout)


def _row_context(row: dict[str, Any]) -> dict[str, Any]:
    """Per-row columns that are safe to send between processes and to clusterers."""
    skip = {"prompt", "completion", "completion_ids"}
    return {k: v for k, v in row.items() if k not in skip and isinstance(v, (str, int, float, bool, list, dict, type(None)))}


@dataclass
class StepClusters:
    """One step's clustering, between :func:`start_clustering` and :func:`finish_clustering`.

    ``prompts`` and ``texts`` (the gathered global batch) and ``pending`` are set on the main
    process only; ``group_size`` everywhere."""

    group_size: int
    prompts: list[str] | None = None
    texts: list[str] | None = None
    pending: PendingClusters | None = None


def start_clustering(trainer: Any, inputs: list[dict], prompts: list, completions: list, *,
                     gather_texts: bool = False) -> StepClusters | None:
    """Gather the batch (every process); the main process starts clustering its groups.

    None when the trainer has no clusterer and ``gather_texts`` is False."""
    if trainer.clusterer is None and not gather_texts:
        return None
    G = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
    all_prompts = gather_object([prompt_text(p) for p in prompts])
    all_texts = gather_object([completion_text(c) for c in completions])
    all_context = gather_object([_row_context(x) for x in inputs]) if trainer.clusterer is not None else None
    if not trainer.accelerator.is_main_process:
        return StepClusters(G)
    step = StepClusters(G, all_prompts, all_texts)
    if trainer.clusterer is not None:
        groups = [Group(all_prompts[s], all_texts[s:s + G], all_context[s]) for s in range(0, len(all_texts), G)]
        step.pending = PendingClusters(trainer.clusterer, groups, background=trainer.args.overlap_clustering)
    return step


def finish_clustering(trainer: Any, step: StepClusters | None) -> tuple[list[ClusterResult] | None, float, float]:
    """``(results, seconds clustering, seconds this call waited)`` on every process.

    A failure of the clusterer stops every process: the main process re-raises it, the others
    raise ``RuntimeError`` naming it; :class:`JudgeUnavailableError` goes through
    :func:`stop_for_judge` on every process."""
    start = time.perf_counter()
    if step is None or trainer.clusterer is None:  # the same on every process
        return None, 0.0, 0.0
    payload: list[Any] = [None]
    error: BaseException | None = None
    if trainer.accelerator.is_main_process:
        try:
            results, seconds = step.pending.result()
            payload = [("ok", results, seconds)]
        except JudgeUnavailableError as e:
            payload = [("unavailable", e)]
        except Exception as e:
            error = e
            payload = [("error", f"{type(e).__name__}: {e}")]
    broadcast_object_list(payload, from_process=0)
    kind, *rest = payload[0]
    if kind == "unavailable":
        stop_for_judge(trainer, rest[0])
    if kind == "error":
        if error is not None:
            raise error
        raise RuntimeError(f"clustering failed on the main process, which stops with it: {rest[0]}")
    return rest[0], rest[1], time.perf_counter() - start


def _save_strategy(args: Any) -> str:
    return str(getattr(args.save_strategy, "value", args.save_strategy))


def checkpoint_for_resume(trainer: Any) -> str | None:
    """Save a checkpoint of the steps done so far (every process; skipped when one exists, with
    ``save_strategy="no"`` and before the first step); its path, or None."""
    step = trainer.state.global_step
    if _save_strategy(trainer.args) == "no" or step == 0:
        return None
    folder = Path(trainer.args.output_dir) / f"checkpoint-{step}"
    exists = [folder.is_dir() if trainer.accelerator.is_main_process else None]
    broadcast_object_list(exists, from_process=0)
    if not exists[0]:
        trainer._save_checkpoint(trainer.model, trial=None)
    return str(folder)


def stop_for_judge(trainer: Any, error: JudgeUnavailableError) -> None:
    """Raise a :class:`JudgeUnavailableError` that names the checkpoint to resume from (saved now)."""
    ckpt = checkpoint_for_resume(trainer)
    step = trainer.state.global_step
    if ckpt is not None:
        how = (f"Training stopped after step {step}; checkpoint {ckpt} holds it. Once the judge answers again, "
               f"resume from it: `polyepo train` with the same config and --resume, or "
               f"trainer.train(resume_from_checkpoint={ckpt!r}).")
    else:
        reason = "save_strategy='no'" if _save_strategy(trainer.args) == "no" else "no step had finished"
        how = (f"Training stopped after step {step}; no checkpoint was written ({reason}), so a rerun starts "
               "afresh once the judge answers again.")
    raise JudgeUnavailableError(f"{error.summary} {how} Raise max_wait_s to wait longer.",
                                waited_s=error.waited_s, last_error=error.last_error, summary=error.summary,
                                checkpoint=ckpt) from error
