"""polyepo's advantage estimators inside verl's estimator registry (verl 0.9 ``register_adv_est``).

Every polyepo estimator is registered (``grpo``, ``dr_grpo``, ``rloo``, ``grpo_div``,
``poly_epo``, ``pass_at_k``, ``set_rl``, ``pkpo``, ``darling``, ``uniqueness``,
``outcome_explore``, ``reinforce_pp_baseline``; docs/estimators.md). Each verl estimator here is a
thin adapter around :func:`polyepo.groups.group_step`, the code the TRL trainer runs too (so an
estimator's batch step, such as ``reinforce_pp_baseline``'s whitening, runs over the whole batch): it turns verl's ``token_level_rewards[B, T]`` into one reward per
row (their sum, as verl's own ``grpo`` does), groups rows by verl's ``index`` (the ``uid`` of
each row), runs the step, and broadcasts each row's advantage over its response tokens
(``* response_mask``). Which rows enter the step, as verl's own ``grpo`` decides it:

- a row whose ``response_mask`` is all zero (rejected by rollout correction, failed) stays
  in its group: its reward counts in the baseline, its advantage is masked to 0;
- a group whose rows ALL have no response token (verl's synthetic padding rows, which get a
  uid of their own) is left out: advantage 0;
- of a multi-output agent session, only the final output enters; the session's other rows
  get its advantage (:func:`polyepo.train.verl.groups.session_finals`).

Cluster ids, unscorable flags and sessions. verl 0.9's ``compute_advantage``
(``verl/trainer/ppo/ray_trainer.py``) calls a custom estimator with ``token_level_rewards``,
``response_mask``, ``config`` (the ``algorithm`` section) and ``index`` only;
``non_tensor_batch`` goes to the built-in ``gdpo`` alone. So the per-row columns reach our
estimator by one of two routes, checked in this order:

1. ``non_tensor_batch=`` if a caller passes it with ``cluster_id`` (a future verl, or a direct call);
2. :func:`estimator_columns`, a context set by polyepo's trainer step
   (:mod:`polyepo.train.verl.trainer`) around verl's own ``_compute_advantage``. The
   columns carry the uid of every row; the estimator checks them against ``index`` row by
   row and fails loudly if verl ever reorders rows between the two. The step's metrics go
   back through the same context. So does the state of the historical ``outcome_explore``:
   the trainer's :class:`polyepo.advantages.AnswerHistory` and a ``prompt_key`` column (the
   row's problem id, else its prompt text; never verl's ``uid``, which is drawn anew each step).

Names: each estimator keeps its polyepo name unless verl has a built-in of that name, in which
case it is ``polyepo_<name>`` (``polyepo_grpo``, ``polyepo_rloo``); see :func:`verl_name`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from ...advantages import ESTIMATORS, NEEDS_CLUSTERS, AnswerHistory, needs_history
from ...clustering import ClusterResult
from ...groups import group_rows, group_step
from .settings import VerlSettings


@dataclass(frozen=True)
class BatchColumns:
    """Per-row columns of the batch whose advantages are being computed.

    Attributes:
        uids: ``object[B]`` verl ``uid`` of each row, in the row order verl will use.
        columns: name -> ``[B]`` array (``unscorable`` bool, ``session`` keys, ``cluster_id``
            int64 when ids are given per row, reward extras as objects).
        results: uid -> the :class:`ClusterResult` of that group's entering rows (batch order).
        history: the trainer's answer counts (historical ``outcome_explore``; with a
            ``prompt_key`` column), or None.
        metrics: filled by the estimator with the group step's metrics.
    """

    uids: np.ndarray
    columns: Mapping[str, np.ndarray]
    results: Mapping[Any, ClusterResult] | None = None
    history: AnswerHistory | None = None
    metrics: dict[str, float] = field(default_factory=dict)


_CURRENT: ContextVar[BatchColumns | None] = ContextVar("polyepo_verl_batch_columns", default=None)


@contextmanager
def estimator_columns(uids: Any, columns: Mapping[str, Any], results: Mapping[Any, ClusterResult] | None = None,
                      history: AnswerHistory | None = None) -> Iterator[BatchColumns]:
    """Make ``columns`` (row-aligned with ``uids``), the groups' cluster ``results`` and the
    answer ``history`` visible to the estimators in this block; the yielded object collects the
    step's metrics."""
    u = np.asarray(list(uids), dtype=object)
    cols = {k: np.asarray(v) if k not in ("session", "prompt_key") else np.asarray(list(v), dtype=object)
            for k, v in columns.items()}
    for name, col in cols.items():
        if col.shape[:1] != u.shape:
            raise ValueError(f"column {name!r} has {col.shape[:1]} rows but there are {u.size} uids")
    token = _CURRENT.set(BatchColumns(u, cols, None if results is None else dict(results), history))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


def _batch_columns(index: np.ndarray, non_tensor_batch: Mapping[str, Any] | None) -> BatchColumns | None:
    if non_tensor_batch is not None and "cluster_id" in non_tensor_batch:
        return BatchColumns(index, {k: np.asarray(v) for k, v in non_tensor_batch.items()})
    current = _CURRENT.get()
    if current is None:
        return None
    if current.uids.shape != index.shape or not np.array_equal(current.uids, index):
        raise RuntimeError(
            f"the batch verl passed to the estimator ({index.size} rows) is not the batch polyepo "
            f"prepared columns for ({current.uids.size} rows, same order): verl's advantage step "
            "changed; check the verl version against docs/verl.md"
        )
    return current


def entering_rows(uids: np.ndarray, has_tokens: np.ndarray) -> np.ndarray:
    """``bool[B]``: rows of groups with at least one response token (a group of verl's padding
    rows, all without a token, is left out; a rejected row in a live group stays in)."""
    enter = np.zeros(uids.size, dtype=bool)
    for g in group_rows(uids):
        enter[g] = bool(has_tokens[g].any())
    return enter


def session_sources(sessions: np.ndarray, final: np.ndarray) -> np.ndarray:
    """``int64[B]``: the row whose advantage each row takes, the final output of its session."""
    final_of = {s: i for i, (s, f) in enumerate(zip(sessions, final)) if f}
    return np.array([final_of.get(s, i) for i, s in enumerate(sessions)], dtype=np.int64)


def verl_name(name: str, builtins: frozenset[str]) -> str:
    """The verl registry name of polyepo estimator ``name``, given verl's built-in names."""
    return f"polyepo_{name}" if name in builtins else name


def _clusters_for(batch: BatchColumns | None, uids: np.ndarray, rows: np.ndarray) -> Any:
    if batch is None:
        return None
    if batch.results is not None:
        out = []
        for g in group_rows(uids[rows]):
            uid = uids[rows[g[0]]]
            if uid not in batch.results:
                raise RuntimeError(f"no cluster result for group uid={uid!r}: the trainer's step did not see it")
            out.append(batch.results[uid])
        return out
    if "cluster_id" in batch.columns:
        return np.asarray(batch.columns["cluster_id"])[rows].astype(np.int64)
    return None


@cache
def verl_estimator(name: str):
    """The verl-signature adapter of polyepo estimator ``name`` (one object per name)."""
    ESTIMATORS.get(name)  # unknown names fail here, listing the valid ones

    def estimator(
        token_level_rewards,
        response_mask,
        index: Any = None,
        config: Any = None,
        non_tensor_batch: Mapping[str, Any] | None = None,
        **unused: Any,
    ):
        """verl estimator: ``token_level_rewards[B, T]``, ``response_mask[B, T]``, ``index[B]``
        -> ``(advantages[B, T], returns[B, T])``, both the per-row advantage times the mask."""
        import torch

        if index is None:
            raise ValueError(f"verl estimator {name!r} needs index (the uid of each row) to form groups")
        uids = np.asarray(list(index), dtype=object)
        rewards = token_level_rewards.detach().to("cpu", torch.float64).sum(dim=-1).numpy()
        batch = _batch_columns(uids, non_tensor_batch)
        settings = VerlSettings.from_config(config)
        has_tokens = (response_mask.detach().to("cpu").sum(dim=-1) > 0).numpy()
        enter = entering_rows(uids, has_tokens)
        source = np.arange(uids.size)
        if batch is not None and "session_final" in batch.columns:
            final = np.asarray(batch.columns["session_final"], dtype=bool)
            source = session_sources(np.asarray(batch.columns["session"], dtype=object), final)
            enter &= final
        rows = np.flatnonzero(enter)
        clusters = _clusters_for(batch, uids, rows)
        if clusters is None and name in NEEDS_CLUSTERS:
            raise RuntimeError(
                f"estimator {name!r} needs per-rollout cluster ids, which verl 0.9 does not pass to custom "
                "estimators: run with trainer.v1.trainer_mode=polyepo_sync and set algorithm.polyepo."
                "clusterer (or cluster_extra_key); `python -m polyepo.train.verl` does both (docs/verl.md)"
            )
        options, keys = _state_options(name, settings.estimator_options, batch, rows)
        step_rewards: list[float | None] = rewards[rows].tolist()
        if batch is not None and "unscorable" in batch.columns:
            flags = np.asarray(batch.columns["unscorable"], dtype=bool)[rows]
            step_rewards = [None if f else r for r, f in zip(step_rewards, flags)]
        adv = np.zeros(uids.size)
        if rows.size:
            step = group_step(step_rewards, uids[rows], clusters, estimator=name, estimator_options=options,
                              options=settings.group_options(), prompt_keys=keys)
            adv[rows] = step.advantages
            if batch is not None:
                batch.metrics.update(step.metrics)
        adv = (adv * has_tokens)[source]  # a session's other outputs take its final output's (masked) advantage
        scores = torch.as_tensor(adv, dtype=torch.float32, device=token_level_rewards.device)
        scores = scores.unsqueeze(-1) * response_mask
        return scores, scores

    estimator.__name__ = f"polyepo_verl_{name}"
    estimator.__qualname__ = estimator.__name__
    return estimator


def _state_options(name: str, options: Mapping[str, Any], batch: BatchColumns | None, rows: np.ndarray,
                   ) -> tuple[dict[str, Any], np.ndarray | None]:
    """The estimator's options plus its state (``history``) and the rows' prompt keys, when it keeps state."""
    if not needs_history(name, options):
        return dict(options), None
    if batch is None or batch.history is None or "prompt_key" not in batch.columns:
        raise RuntimeError(
            f"estimator {name!r} with {dict(options)} keeps per-prompt answer counts across steps, which "
            "only polyepo's trainer holds (and saves in its checkpoints): run with trainer.v1.trainer_mode="
            "polyepo_sync; `python -m polyepo.train.verl` does (docs/verl.md)")
    return {**options, "history": batch.history}, np.asarray(batch.columns["prompt_key"], dtype=object)[rows]


def register_estimators() -> dict[str, str]:
    """Register every polyepo estimator in verl's registry; returns polyepo name -> verl name.

    Idempotent (the same adapter object is registered again).
    """
    from verl.trainer.ppo.core_algos import AdvantageEstimator, register_adv_est

    builtins = frozenset(e.value for e in AdvantageEstimator)
    names = {}
    for name in ESTIMATORS.names():
        names[name] = verl_name(name, builtins)
        register_adv_est(names[name])(verl_estimator(name))
    return names
