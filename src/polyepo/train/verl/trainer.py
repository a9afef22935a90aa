"""verl 0.9's v1 synchronous trainer with polyepo's grouping step before the advantages.

Registered in verl's trainer registry as ``polyepo_sync`` (``trainer.v1.trainer_mode=
polyepo_sync``). It differs from verl's ``sync`` trainer (``PPOTrainerSync``) in ONE step,
``_compute_advantage``: before verl's own code runs, it reads each row's ``uid``, prompt,
response and ``reward_extra_info`` from verl's TransferQueue, clusters every group once on
all of its responses (:mod:`polyepo.train.verl.groups`), and makes the cluster results, the
unscorable flags and the agent-loop sessions visible to polyepo's estimators while verl's
``_compute_advantage`` runs (:func:`polyepo.train.verl.estimators.estimator_columns`); the
estimator runs the group step and hands its metrics back, which are logged with verl's.
verl's KL-in-reward, rollout correction and write-back stay verl's.

With ``overlap_clustering`` (the default) the clustering starts earlier: each group is
clustered as soon as verl has scored all of its rollouts, while the others are still
generated and scored (:mod:`polyepo.train.verl.early`, hooked onto the polling of verl's own
replay buffer); the advantage step then takes the results. A judge that stays down past
``max_wait_s`` (``on_failure=wait``) stops the run with a message saying how verl resumes.

At start-up (``__init__``) it checks what would otherwise fail at the first step, or
silently later: the ``algorithm.polyepo`` settings and estimator options, ``set_size`` against
``rollout.n``, the reward function (built once: unknown options and missing packages fail
here, naming them) and the clusterer.

The historical ``outcome_explore`` keeps per-prompt answer counts across steps: one
:class:`polyepo.advantages.AnswerHistory` on the driver (here), fed each step's batch with the
rows' problem ids (``extra_info["problem_id"]``, else the prompt text) as keys, written into
every checkpoint (``global_step_N/answer_history.json``, before verl marks the checkpoint as
the latest) and read back when verl resumes (a checkpoint without it is an error). verl's
validation does not compute advantages, so it never counts.

Relies on (verl 0.9.1, checked by tests/test_verl.py): ``verl.trainer.ppo.v1.PPOTrainerSync``
and ``register_trainer``; ``PPOTrainer._compute_advantage(batch: KVBatchMeta, metrics)``
reading rows with ``tq.kv_batch_get(keys=batch.keys, ...)``; the TransferQueue fields
``uid``, ``raw_prompt``, ``responses``, ``rm_scores``, ``extra_fields["reward_extra_info"]``,
the ``is_padding`` tag of verl's synthetic rows and the key format ``{uid}_{session}_{index}``;
``extra_info`` (the dataset row's, stored by the agent loop), ``_save_checkpoint`` /
``_load_checkpoint`` and their ``trainer.default_local_dir/global_step_N`` layout;
for the early clustering, the sync ``ReplayBuffer`` (``self.replay_buffer``) refreshing
``finished_keys`` and ``partitions`` in ``_sync_metadata_from_transfer_queue`` at each poll,
and ``reward_loop_manager.reward_loop_worker_handles`` (not None: rewards are scored during
sampling).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from ...advantages import AnswerHistory, needs_history
from ...clustering import Clusterer, make_clusterer
from ...clustering.base import prompt_text
from ...groups.watch import DEGENERATE, DiversityWatch
from ...judge.policy import JudgeUnavailableError
from .early import EarlyClusters
from .estimators import estimator_columns
from .groups import BatchRows, cluster_results, row_columns, scatter_columns
from .settings import VerlSettings
from .startup import check_startup, polyepo_estimator

log = logging.getLogger("polyepo.train.verl")

TRAINER_MODE = "polyepo_sync"
#: TransferQueue fields the grouping step reads.
ROW_FIELDS = ["uid", "raw_prompt", "responses", "rm_scores", "extra_fields"]


def _as_list(value: Any) -> list:
    """Rows of a TransferQueue field: tensors (nested or stacked) or plain Python values."""
    if isinstance(value, torch.Tensor):
        return list(value.unbind()) if value.is_nested else list(value)
    items = value.tolist() if hasattr(value, "tolist") else list(value)
    return [getattr(v, "data", v) for v in items]


def _reward_extras(extra_field: Any) -> dict[str, Any]:
    extra_field = getattr(extra_field, "data", extra_field)
    info = extra_field.get("reward_extra_info") if isinstance(extra_field, dict) else None
    return dict(info or {})


def rows_from_fields(data: Any, tokenizer: Any, keep: np.ndarray, keys: list[str] | None = None) -> BatchRows:
    """:class:`BatchRows` of the rows ``keep`` (bool[B]) of a TransferQueue read of ``ROW_FIELDS``
    (``keys``: the batch's TransferQueue keys, ``{uid}_{session}_{index}``), plus ``extra_info``
    when the read has it (the problem ids).

    ``data``: the TensorDict ``tq.kv_batch_get`` returns, one row per key: ``responses`` and
    ``rm_scores`` as jagged nested tensors (or stacked, when all rows have one length), the
    other fields as non-tensor stacks.
    """
    uids = _as_list(data["uid"])
    idx = np.flatnonzero(keep)
    responses = _as_list(data["responses"])
    rm_scores = _as_list(data["rm_scores"])
    raw_prompts = list(data["raw_prompt"])
    extra_fields = _as_list(data["extra_fields"])
    problem_ids = None
    if "extra_info" in data.keys():
        infos = [getattr(v, "data", v) for v in _as_list(data["extra_info"])]
        problem_ids = [(info.get("problem_id") if isinstance(info, dict) else None) for info in (infos[i] for i in idx)]
    return BatchRows(
        uids=[uids[i] for i in idx],
        prompts=[prompt_text(raw_prompts[i]) for i in idx],
        responses=[tokenizer.decode(responses[i].tolist(), skip_special_tokens=True) for i in idx],
        rewards=np.array([float(rm_scores[i].double().sum()) for i in idx], dtype=np.float64),
        extras=[_reward_extras(extra_fields[i]) for i in idx],
        keys=None if keys is None else [str(keys[i]) for i in idx],
        problem_ids=problem_ids,
    )


def answer_history_for(config: Any, settings: VerlSettings) -> AnswerHistory | None:
    """A fresh :class:`AnswerHistory` when ``algorithm.adv_estimator`` with its options keeps one."""
    name = polyepo_estimator(config.algorithm.adv_estimator)
    return AnswerHistory() if name is not None and needs_history(name, settings.estimator_options) else None


@register_trainer(TRAINER_MODE)
class PolyEPOTrainerSync(PPOTrainerSync):
    """verl's synchronous PPO trainer plus polyepo's per-group clustering step."""

    def __init__(self, config: Any) -> None:
        # verl branches on trainer_mode == "sync" (replay buffer, refills): run as "sync".
        settings = check_startup(config)  # bad settings, options or packages fail here, before verl starts workers
        #: the historical outcome_explore's answer counts (None for every other estimator)
        self.answer_history = answer_history_for(config, settings)
        with open_dict(config.trainer.v1):
            config.trainer.v1.trainer_mode = "sync"
        super().__init__(config)
        self._polyepo_clusterer: tuple[str, Clusterer] | None = None
        clusterer = self._clusterer(settings)  # the clusterer too (its options, its packages)
        self._polyepo_early = install_early_clustering(self, settings, clusterer)

    def _clusterer(self, settings: VerlSettings) -> Clusterer | None:
        if settings.clusterer is None:
            return None
        key = json.dumps([settings.clusterer, settings.clusterer_options], sort_keys=True, default=str)
        if self._polyepo_clusterer is None or self._polyepo_clusterer[0] != key:
            self._polyepo_clusterer = (key, make_clusterer(settings.clusterer, **settings.clusterer_options))
        return self._polyepo_clusterer[1]

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        settings = VerlSettings.from_config(self.config.algorithm)
        fields = ROW_FIELDS + (["extra_info"] if self.answer_history is not None else [])
        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
        keep = np.array([not tag.get("is_padding", False) for tag in batch.tags], dtype=bool)
        rows = rows_from_fields(data, self.tokenizer, keep, list(batch.keys))
        early: EarlyClusters | None = getattr(self, "_polyepo_early", None)
        spans = early.spans if early is not None else []
        spans.clear()  # (start, end) of each early result this step takes
        start = time.perf_counter()
        try:
            results, waited = cluster_results(rows, settings, self._clusterer(settings),
                                              ready=early.take if early is not None else None)
        except JudgeUnavailableError as e:
            raise verl_stop(self.config, e) from e
        none_reward = _none_reward(self.config)
        columns = scatter_columns(row_columns(rows, none_reward), np.flatnonzero(keep), len(keep))
        with estimator_columns(_as_list(data["uid"]), columns, results, self.answer_history) as step:
            out = super()._compute_advantage(batch, metrics)
        metrics.update(step.metrics)  # the group step's vocabulary (docs/training.md)
        if results is not None:
            self._watch_diversity(settings, results, metrics)
        late = results is not None and len(results) > len(spans)
        metrics["polyepo/time_cluster_s"] = cluster_span(spans, (start, start + waited) if late else None)
        metrics["polyepo/time_cluster_wait_s"] = waited
        return out

    def _watch_diversity(self, settings: VerlSettings, results: dict[Any, Any], metrics: dict) -> None:
        """The degenerate-diversity warning (:mod:`polyepo.groups.watch`) over the step's
        ``uid -> ClusterResult``, once per run: logged on the driver and as
        ``polyepo/warning_degenerate_diversity`` = 1 at the step it fires."""
        watch: DiversityWatch | None = getattr(self, "_polyepo_watch", None)
        if watch is None:
            degenerate = settings.estimator_options.get("degenerate", DEGENERATE)
            name = settings.clusterer or f"the reward's {settings.cluster_extra_key!r} extra"
            watch = self._polyepo_watch = DiversityWatch(str(name), degenerate=degenerate)
        message = watch.observe(list(results.values()), step=getattr(self, "global_steps", None))
        if message:
            log.warning("warning: %s", message)
            metrics["polyepo/warning_degenerate_diversity"] = 1.0

    def _save_checkpoint(self) -> None:
        """verl's checkpoint, with the answer history written into it first (before verl marks
        it as the latest one)."""
        if self.answer_history is not None:
            self.answer_history.save_to_checkpoint(_step_folder(self.config, self.global_steps))
        super()._save_checkpoint()

    def _load_checkpoint(self) -> None:
        """verl's resume; then the answer history of the checkpoint it resumed from (an error if
        the checkpoint has none, never a fresh start)."""
        super()._load_checkpoint()
        if self.answer_history is not None and self.global_steps > 0:
            self.answer_history = AnswerHistory.from_checkpoint(_step_folder(self.config, self.global_steps, resuming=True))


def _step_folder(config: Any, step: int, *, resuming: bool = False) -> str:
    """The ``global_step_N`` folder verl saves step ``step`` to, or (``resuming``) the one it
    resumed from: ``trainer.resume_from_path`` in ``resume_mode=resume_path``."""
    if resuming and config.trainer.resume_mode == "resume_path":
        return os.path.abspath(str(config.trainer.resume_from_path))
    return os.path.join(os.path.abspath(str(config.trainer.default_local_dir)), f"global_step_{step}")


def cluster_span(early: list[tuple[float, float]], late: tuple[float, float] | None) -> float:
    """Seconds from the start of a step's first clustering to the end of its last: the early
    ones (``(start, end)`` each) and the one in the advantage step (``late``, if any)."""
    spans = [*early, *([late] if late is not None else [])]
    return max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0.0


def install_early_clustering(trainer: Any, settings: VerlSettings, clusterer: Clusterer | None) -> EarlyClusters | None:
    """Cluster each group as soon as it is scored (:mod:`.early`): after every poll of verl's
    sync replay buffer, the newly finished groups start clustering. None (clustering waits for
    the advantage step) without ``overlap_clustering`` or a clusterer, with ``filter_groups``
    (its evicted groups would be judged for nothing) or a custom sampler."""
    buffer = getattr(trainer, "replay_buffer", None)
    if not settings.overlap_clustering or clusterer is None:
        return None
    if type(buffer) is not ReplayBuffer or getattr(buffer, "filter_groups_metric", None) is not None:
        log.info("polyepo: groups are clustered in the advantage step (a custom sampler or filter_groups is set)")
        return None

    def read(keys: list[str]) -> BatchRows:
        data = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=ROW_FIELDS)
        return rows_from_fields(data, trainer.tokenizer, np.ones(len(keys), dtype=bool), keys)

    early = EarlyClusters(clusterer, settings.cluster_workers, read)
    poll = buffer._sync_metadata_from_transfer_queue

    def synced() -> None:
        poll()
        manager = getattr(trainer, "reward_loop_manager", None)
        if getattr(manager, "reward_loop_worker_handles", None) is not None:  # rewards scored during sampling
            finished = getattr(buffer, "finished_keys", {}).get("train", ())
            early.notice(finished, getattr(buffer, "partitions", {}).get("train", {}))

    buffer._sync_metadata_from_transfer_queue = synced
    return early


def verl_stop(config: Any, error: JudgeUnavailableError) -> JudgeUnavailableError:
    """The error that stops a verl run whose judge stayed down: what happened and how verl resumes."""
    t = config.trainer
    saved = (f"verl writes a checkpoint every trainer.save_freq={t.save_freq} steps to "
             f"trainer.default_local_dir={t.default_local_dir}" if int(t.save_freq) > 0
             else "trainer.save_freq=-1: verl wrote no checkpoint, so a rerun starts afresh")
    return JudgeUnavailableError(
        f"{error.summary} {saved}. Once the judge answers again, rerun the same command: with "
        f"trainer.resume_mode=auto (now {t.resume_mode}) verl continues from its newest checkpoint. Raise "
        "algorithm.polyepo.clusterer_options.max_wait_s to wait longer.",
        waited_s=error.waited_s, last_error=error.last_error, summary=error.summary)


def _none_reward(config: Any) -> float | None:
    """``reward_kwargs.none_reward`` of polyepo's reward function (None: unset, or another reward)."""
    try:
        value = config.reward.custom_reward_function.reward_kwargs.get("none_reward")
    except AttributeError:
        return None
    return None if value is None else float(value)
