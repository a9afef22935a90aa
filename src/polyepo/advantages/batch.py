"""Batch hooks: a second step that sees every group of a batch at once.

An estimator works on one group. A few need the whole batch as well (REINFORCE++ normalises
over the batch); such an estimator carries a *batch hook*, attached with :func:`with_batch_hook`.
:func:`polyepo.advantages.compute_advantages` runs the per-group step on every group, then the
hook once::

    hook(advantages[B], *, rewards[B], clusters[B] | None, groups: list[int array], **options) -> float64[B]

``groups`` holds the row indices of each group; ``options`` are the estimator's options. The
per-group function alone is the first step only: callers that want an estimator's advantages
go through ``compute_advantages`` (or ``group_advantages`` for a batch of one group).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._checks import check_finite_number, check_rewards

BatchHook = Callable[..., np.ndarray]


def with_batch_hook(hook: BatchHook) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator: attach ``hook`` to a per-group estimator as its batch step."""

    def attach(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        fn.batch_hook = hook  # type: ignore[attr-defined]
        return fn

    return attach


def get_batch_hook(fn: Callable[..., np.ndarray]) -> BatchHook | None:
    """The batch hook attached to estimator function ``fn``, or None."""
    return getattr(fn, "batch_hook", None)


# ---------------------------------------------------------------------------------------
# REINFORCE++ with a group baseline (verl's reinforce_plus_plus_baseline)
# ---------------------------------------------------------------------------------------


def whiten_batch(advantages: np.ndarray, *, epsilon: float = 1e-8, **_: object) -> np.ndarray:
    """``(A - mean A) / sqrt(var A + epsilon)`` over the whole batch, ``var`` unbiased (ddof=1).

    verl's ``masked_whiten``, with one entry per rollout; a batch of one rollout gives 0.
    """
    a = np.asarray(advantages, dtype=np.float64)
    if a.size < 2:
        return np.zeros_like(a)
    return (a - a.mean()) / np.sqrt(a.var(ddof=1) + check_finite_number(epsilon, "epsilon"))


@with_batch_hook(whiten_batch)
def reinforce_pp_baseline_advantages(rewards, clusters=None, *, epsilon: float = 1e-8) -> np.ndarray:
    """REINFORCE++ with a group baseline (Hu 2025, arXiv 2501.03262; verl's ``reinforce_plus_plus_baseline``).

    Group step: ``r_i - mean r`` (a group of one keeps ``r``: verl's baseline of a lone rollout
    is 0). Batch step (:func:`whiten_batch`): whitened over every rollout of the batch,
    ``(A - mean) / sqrt(var + epsilon)``. ``clusters`` is ignored.
    """
    r = check_rewards(rewards)
    check_finite_number(epsilon, "epsilon")
    return r.copy() if r.size == 1 else r - r.mean()
