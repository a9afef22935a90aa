"""Advantage estimators: per-rollout rewards (and strategy clusters) in, advantages out.

Pure NumPy. Every estimator has one signature and works on one *group* (one prompt's N
rollouts)::

    estimator(rewards[N], clusters[N] | None, **options) -> float64[N]

Look estimators up by name in :data:`ESTIMATORS` (``get_estimator("poly_epo")``), run one
on one group with :func:`group_advantages`, or over many groups of possibly unequal sizes
with :func:`compute_advantages`.

Registered estimators:

============  ==================================================================  ========
name          advantage                                                           clusters
============  ==================================================================  ========
grpo          (r - mean) / (std + eps)                                            no
dr_grpo       r - mean                                                            no
rloo          r - leave-one-out mean                                              no
grpo_div      centred r + weight * (N/|cluster| - 1)/(N - 1)                      yes
poly_epo      polychromic marginal set advantage, closed form                     yes
pass_at_k     marginal set advantage of max reward in the set, closed form        no
set_rl        any set objective, all subsets or K sampled subsets                 depends
============  ==================================================================  ========
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..registry import Registry, UnknownNameError
from ._checks import check_rewards
from .baselines import (
    diversity_bonus,
    dr_grpo_advantages,
    grpo_advantages,
    grpo_div_advantages,
    rloo_advantages,
)
from .closed_form import pass_at_k_advantages, poly_epo_advantages
from .set_rl import (
    SET_OBJECTIVES,
    all_subsets,
    marginal_from_sets,
    sample_subsets,
    set_rl_advantages,
)

Estimator = Callable[..., np.ndarray]
ESTIMATORS: Registry[Estimator] = Registry("estimator", skip=2)

for _name, _fn in {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "grpo_div": grpo_div_advantages,
    "poly_epo": poly_epo_advantages,
    "pass_at_k": pass_at_k_advantages,
    "set_rl": set_rl_advantages,
}.items():
    ESTIMATORS.register(_name)(_fn)

#: Estimators that cannot run without cluster ids.
NEEDS_CLUSTERS = frozenset({"grpo_div", "poly_epo"})

#: Options several estimators share, and their one description: ``PolyEPOConfig``'s fields,
#: ``polyepo estimators`` and ``polyepo advantage`` take their help (and defaults) from here.
SHARED_OPTIONS: dict[str, str] = {
    "set_size": "Set size n of the set estimators (poly_epo, pass_at_k, set_rl): the sets scored are the "
                "n-subsets of one group's rollouts.",
    "reduction": "Marginal advantage over the sets holding a rollout: sum (seed 002) or mean (the Poly-EPO "
                 "authors' code); see docs/closed-form.md.",
    "min_distinct": "Poly-EPO gate: sets with fewer distinct non-degenerate strategies score 0 (2 = seed "
                    "002's |U| > 1; 1 = no gate).",
    "degenerate": "Cluster ids that are no real strategy (empty, gibberish, off-task answers).",
}


def shared_option_default(name: str) -> object:
    """The default of shared option ``name``: that of the first estimator (by name) taking it."""
    for est in ESTIMATORS.names():
        opts = estimator_options(est)
        if name in opts:
            return opts[name]
    raise KeyError(name)


#: ``compute_advantages(short_groups=...)``: a group smaller than ``set_size`` is an ``error``,
#: or its ``set_size`` shrinks to the group's size (``shrink``).
SHORT_GROUPS = ("error", "shrink")
#: ``compute_advantages(singletons=...)``: a group of one rollout goes to the ``estimator`` as
#: any group, gets advantage 0 (``zero``: no group to compare with), or its own reward
#: (``reward``: baseline 0, as verl's built-in ``grpo`` does for a group of one).
SINGLETONS = ("estimator", "zero", "reward")


def get_estimator(name: str) -> Estimator:
    """The estimator registered as ``name``; the error lists the valid names."""
    return ESTIMATORS.get(name)


def estimator_options(name: str) -> dict[str, object]:
    """The keyword options of estimator ``name`` and their defaults."""
    return ESTIMATORS.options(name) or {}


def check_options(name: str, options: dict[str, object]) -> None:
    """Raise ``ValueError`` naming any option that estimator ``name`` does not take (with the
    closest valid one and the list of valid options)."""
    ESTIMATORS.check_options(name, options)


def group_advantages(estimator: str, rewards, clusters=None, **options) -> np.ndarray:
    """Run estimator ``estimator`` on one group, checking its options first."""
    fn = get_estimator(estimator)
    check_options(estimator, options)
    return fn(rewards, clusters, **options)


def _group_slices(total: int, group_sizes, group_ids) -> list[np.ndarray]:
    if (group_sizes is None) == (group_ids is None):
        raise ValueError("give exactly one of group_sizes (int or list of ints) and group_ids")
    if group_ids is not None:
        ids = np.asarray(group_ids)
        if ids.shape != (total,):
            raise ValueError(f"group_ids has shape {ids.shape}; expected ({total},), one per rollout")
        _, inverse = np.unique(ids, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        return np.split(order, bounds)
    if isinstance(group_sizes, (int, np.integer)) and not isinstance(group_sizes, bool):
        if group_sizes < 1 or total % group_sizes:
            raise ValueError(
                f"group_sizes={group_sizes} does not divide the {total} rollouts into equal groups"
            )
        group_sizes = [int(group_sizes)] * (total // int(group_sizes))
    sizes = [int(s) for s in group_sizes]
    if any(s < 1 for s in sizes):
        raise ValueError(f"group_sizes must all be >= 1 (an empty group has no advantage); got {sizes}")
    if sum(sizes) != total:
        raise ValueError(f"group_sizes add up to {sum(sizes)} but there are {total} rollouts")
    bounds = np.cumsum(sizes)[:-1]
    return np.split(np.arange(total), bounds)


def compute_advantages(
    rewards,
    clusters=None,
    *,
    group_sizes: int | Sequence[int] | None = None,
    group_ids: Sequence[object] | None = None,
    estimator: str = "poly_epo",
    short_groups: str = "error",
    singletons: str = "estimator",
    **options,
) -> np.ndarray:
    """Advantages for a flat batch of rollouts made of several groups.

    Args:
        rewards: ``[B]`` rewards of all rollouts.
        clusters: ``[B]`` cluster ids, or None for estimators that do not use them.
        group_sizes: an int (every group has that many adjacent rollouts, as TRL's
            ``num_generations``) or a list of sizes of adjacent groups, possibly unequal.
        group_ids: alternatively one group label per rollout (any order, as verl's uid).
        estimator: a name in :data:`ESTIMATORS`.
        short_groups: ``error`` (default: a set estimator raises on a group smaller than
            ``set_size``) or ``shrink`` (that group's ``set_size`` becomes its size).
        singletons: what a group of one rollout gets: ``estimator`` (default: the estimator
            decides), ``zero`` or ``reward`` (see :data:`SINGLETONS`).
        **options: the estimator's options (``set_size``, ``reduction`` ...).

    Returns:
        ``float64[B]``, aligned with ``rewards``.
    """
    fn = get_estimator(estimator)
    check_options(estimator, options)
    if short_groups not in SHORT_GROUPS:
        raise ValueError(f"short_groups must be one of {', '.join(SHORT_GROUPS)}, got {short_groups!r}")
    if singletons not in SINGLETONS:
        raise ValueError(f"singletons must be one of {', '.join(SINGLETONS)}, got {singletons!r}")
    r = check_rewards(rewards)
    c = None if clusters is None else np.asarray(clusters)
    if c is not None and c.shape != r.shape:
        raise ValueError(f"clusters has shape {c.shape} but rewards has shape {r.shape}")
    if c is None and estimator in NEEDS_CLUSTERS:
        raise ValueError(f"estimator {estimator!r} needs cluster ids; clusters is None")
    set_size = options.get("set_size", estimator_options(estimator).get("set_size"))
    out = np.empty(r.size)
    for g, idx in enumerate(_group_slices(r.size, group_sizes, group_ids)):
        if idx.size == 1 and singletons != "estimator":
            out[idx] = r[idx] if singletons == "reward" else 0.0
            continue
        opts = options
        if short_groups == "shrink" and isinstance(set_size, (int, np.integer)) and set_size > idx.size:
            opts = {**options, "set_size": int(idx.size)}
        try:
            out[idx] = fn(r[idx], None if c is None else c[idx], **opts)
        except ValueError as e:
            raise type(e)(f"group {g} (rollouts {idx.tolist()[:8]}{'...' if idx.size > 8 else ''}): {e}") from e
    return out


__all__ = [
    "ESTIMATORS",
    "NEEDS_CLUSTERS",
    "SET_OBJECTIVES",
    "SHARED_OPTIONS",
    "SHORT_GROUPS",
    "SINGLETONS",
    "UnknownNameError",
    "all_subsets",
    "check_options",
    "compute_advantages",
    "diversity_bonus",
    "dr_grpo_advantages",
    "estimator_options",
    "get_estimator",
    "group_advantages",
    "grpo_advantages",
    "grpo_div_advantages",
    "marginal_from_sets",
    "pass_at_k_advantages",
    "poly_epo_advantages",
    "rloo_advantages",
    "sample_subsets",
    "set_rl_advantages",
    "shared_option_default",
]
