"""polyepo's advantage estimators inside verl's estimator registry (verl 0.9 ``register_adv_est``).

Each verl estimator here is a thin adapter around ONE polyepo estimator, through
:func:`polyepo.advantages.compute_advantages` (the same code the TRL path runs): it turns
verl's ``token_level_rewards[B, T]`` into one reward per row (their sum, as verl's own GRPO
does), groups rows by verl's ``index`` (the ``uid`` of each row), and broadcasts each row's
advantage over its response tokens (``* response_mask``). Rows without any response token
(the synthetic rows verl appends to make a batch divisible) get advantage 0 and are left
out of the groups.

Cluster ids. verl 0.9's ``compute_advantage`` (``verl/trainer/ppo/ray_trainer.py``) calls a
custom estimator with ``token_level_rewards``, ``response_mask``, ``config`` (the
``algorithm`` section) and ``index`` only; ``non_tensor_batch`` goes to the built-in
``gdpo`` alone. So the per-row columns (``cluster_id`` and the reward extras) reach our
estimator by one of two routes, checked in this order:

1. ``non_tensor_batch=`` if a caller passes it (a future verl, or a direct call);
2. :func:`estimator_columns`, a context set by polyepo's trainer step
   (:mod:`polyepo.train.verl.trainer`) around verl's own ``_compute_advantage``. The
   columns carry the uid of every row; the estimator checks them against ``index`` row by
   row and fails loudly if verl ever reorders rows between the two.

Names: each estimator keeps its polyepo name (``poly_epo``, ``dr_grpo``, ``grpo_div``,
``pass_at_k``, ``set_rl``) unless verl has a built-in of that name, in which case it is
``polyepo_<name>`` (``polyepo_grpo``, ``polyepo_rloo``); see :func:`verl_name`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ...advantages import ESTIMATORS, NEEDS_CLUSTERS, compute_advantages
from .settings import VerlSettings


@dataclass(frozen=True)
class BatchColumns:
    """Per-row columns of the batch whose advantages are being computed.

    Attributes:
        uids: ``object[B]`` verl ``uid`` of each row, in the row order verl will use.
        columns: name -> ``[B]`` array (``cluster_id`` int64, reward extras as objects).
    """

    uids: np.ndarray
    columns: Mapping[str, np.ndarray]


_CURRENT: ContextVar[BatchColumns | None] = ContextVar("polyepo_verl_batch_columns", default=None)


@contextmanager
def estimator_columns(uids: Any, columns: Mapping[str, Any]) -> Iterator[BatchColumns]:
    """Make ``columns`` (row-aligned with ``uids``) visible to the estimators in this block."""
    u = np.asarray(list(uids), dtype=object)
    cols = {k: np.asarray(v) for k, v in columns.items()}
    for name, col in cols.items():
        if col.shape[:1] != u.shape:
            raise ValueError(f"column {name!r} has {col.shape[:1]} rows but there are {u.size} uids")
    token = _CURRENT.set(BatchColumns(u, cols))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


def _row_columns(index: np.ndarray, non_tensor_batch: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if non_tensor_batch is not None and "cluster_id" in non_tensor_batch:
        return non_tensor_batch
    current = _CURRENT.get()
    if current is None:
        return non_tensor_batch
    if current.uids.shape != index.shape or not np.array_equal(current.uids, index):
        raise RuntimeError(
            f"the batch verl passed to the estimator ({index.size} rows) is not the batch polyepo "
            f"prepared columns for ({current.uids.size} rows, same order): verl's advantage step "
            "changed; check the verl version against docs/verl.md"
        )
    return current.columns


def verl_name(name: str, builtins: frozenset[str]) -> str:
    """The verl registry name of polyepo estimator ``name``, given verl's built-in names."""
    return f"polyepo_{name}" if name in builtins else name


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
        columns = _row_columns(uids, non_tensor_batch)
        clusters = None if columns is None or "cluster_id" not in columns else np.asarray(columns["cluster_id"])
        if clusters is None and name in NEEDS_CLUSTERS:
            raise RuntimeError(
                f"estimator {name!r} needs per-rollout cluster ids, which verl 0.9 does not pass to custom "
                "estimators: run with trainer.v1.trainer_mode=polyepo_sync and set algorithm.polyepo."
                "clusterer (or cluster_extra_key); `python -m polyepo.train.verl` does both (docs/verl.md)"
            )
        options = VerlSettings.from_config(config).estimator_options
        # rows with no response token (verl's synthetic padding rows) take no part: advantage 0
        active = (response_mask.detach().to("cpu").sum(dim=-1) > 0).numpy()
        adv = np.zeros(uids.size)
        if active.any():
            adv[active] = compute_advantages(
                rewards[active], None if clusters is None else clusters[active],
                group_ids=uids[active], estimator=name, **options,
            )
        scores = torch.as_tensor(adv, dtype=torch.float32, device=token_level_rewards.device)
        scores = scores.unsqueeze(-1) * response_mask
        return scores, scores

    estimator.__name__ = f"polyepo_verl_{name}"
    estimator.__qualname__ = estimator.__name__
    return estimator


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
