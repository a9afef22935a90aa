"""Advantage estimators: per-rollout rewards (and strategy clusters) in, advantages out.

Pure NumPy. Every estimator has one signature and works on one *group* (one prompt's N
rollouts)::

    estimator(rewards[N], clusters[N] | None, **options) -> float64[N]

Look estimators up by name in :data:`ESTIMATORS` (``get_estimator("poly_epo")``), run one
on one group with :func:`group_advantages`, or over a whole batch of groups of possibly
unequal sizes with :func:`compute_advantages`, the one batch entry point: it runs the
per-group step on every group, then the estimator's batch hook if it has one
(:mod:`polyepo.advantages.batch`).

Registered estimators (formulas, papers and options: docs/estimators.md):

=====================  ==========================================================  ========
name                   advantage                                                   clusters
=====================  ==========================================================  ========
grpo                   (r - mean) / (std + eps)                                    no
dr_grpo                r - mean                                                    no
rloo                   r - leave-one-out mean                                      no
grpo_div               centred r + weight * (N/|cluster| - 1)/(N - 1)              yes
poly_epo               polychromic marginal set advantage, closed form             yes
pass_at_k              marginal set advantage of max reward in the set             no
set_rl                 any set objective, all subsets or K sampled subsets         depends
pkpo                   PKPO maxg@k gradient weights, loo-1 or loo baseline         no
darling                r * max(floor, (N - m_i)/(N - 1)), centred (DARLING)        yes
uniqueness             GRPO advantage * m_i^-alpha (uniqueness-aware RL)           yes
outcome_explore        r with a batch penalty / historical bonus by answer         yes
reinforce_pp_baseline  r - group mean, whitened over the batch (REINFORCE++)       no
=====================  ==========================================================  ========

``clusters`` of ``outcome_explore`` are answer ids; its historical variant also takes the
runtime options ``history`` (an :class:`AnswerHistory`) and ``prompt_key``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

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
from .batch import BatchHook, get_batch_hook, reinforce_pp_baseline_advantages, whiten_batch, with_batch_hook
from .closed_form import pass_at_k_advantages, poly_epo_advantages
from .diversity import darling_advantages, uniqueness_advantages
from .outcome import HISTORY_FILE, AnswerHistory, outcome_explore_advantages
from .pkpo import pkpo_advantages
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
    "pkpo": pkpo_advantages,
    "darling": darling_advantages,
    "uniqueness": uniqueness_advantages,
    "outcome_explore": outcome_explore_advantages,
    "reinforce_pp_baseline": reinforce_pp_baseline_advantages,
}.items():
    ESTIMATORS.register(_name)(_fn)

#: Estimators that cannot run without cluster ids (answer ids for ``outcome_explore``).
NEEDS_CLUSTERS = frozenset({"grpo_div", "poly_epo", "darling", "uniqueness", "outcome_explore"})

#: Options that a caller supplies at run time, never a config file: ``history`` (an
#: :class:`AnswerHistory`) and ``prompt_key`` (filled per group from ``prompt_keys``).
RUNTIME_OPTIONS = frozenset({"history", "prompt_key"})

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


def _parameters(name: str) -> dict[str, object]:
    return ESTIMATORS.options(name) or {}


def estimator_options(name: str) -> dict[str, object]:
    """The keyword options of estimator ``name`` and their defaults (runtime options left out)."""
    return {k: v for k, v in _parameters(name).items() if k not in RUNTIME_OPTIONS}


def runtime_options(name: str) -> frozenset[str]:
    """The :data:`RUNTIME_OPTIONS` that estimator ``name`` takes."""
    return RUNTIME_OPTIONS & frozenset(_parameters(name))


def needs_history(name: str, options: Mapping[str, object] | None = None) -> bool:
    """Whether estimator ``name`` with ``options`` keeps state across steps: an
    :class:`AnswerHistory` that the trainer creates, passes as ``history``, saves in every
    checkpoint and restores on resume (the historical ``outcome_explore``; docs/estimators.md).
    An estimator that takes ``history`` decides by its ``uses_history(**options)`` attribute."""
    if "history" not in runtime_options(name):
        return False
    decide = getattr(get_estimator(name), "uses_history", None)
    return True if decide is None else bool(decide(**{k: v for k, v in (options or {}).items()
                                                        if k not in RUNTIME_OPTIONS}))


def batch_hook(name: str) -> BatchHook | None:
    """The batch step of estimator ``name`` (run by :func:`compute_advantages`), or None."""
    return get_batch_hook(get_estimator(name))


def check_options(name: str, options: dict[str, object]) -> None:
    """Raise ``ValueError`` naming any option that estimator ``name`` does not take (with the
    closest valid one and the list of valid options); runtime options count as options."""
    ESTIMATORS.check_options(name, options)


def check_option_values(name: str, options: Mapping[str, object], group_size: int = 8) -> None:
    """Run estimator ``name`` once on a made-up group of ``group_size`` rollouts (rewards 0/1,
    three strategies), as the group step runs it (a ``set_size`` above the group shrinks), so that
    a bad option value (an unknown variant, a negative floor ...) fails now, with the estimator's
    own message, not at the first training step. Raises ``ValueError``."""
    n = max(int(group_size), 2)
    opts = {k: v for k, v in options.items() if k not in RUNTIME_OPTIONS}
    rewards, clusters = np.arange(n) % 2, np.arange(n) % 3 + 1
    extra = {"history": AnswerHistory(), "prompt_keys": ["check"] * n} if needs_history(name, opts) else {}
    compute_advantages(rewards, clusters, group_sizes=n, estimator=name, short_groups="shrink", **extra, **opts)


def group_advantages(estimator: str, rewards, clusters=None, **options) -> np.ndarray:
    """Run estimator ``estimator`` on one group (a batch of one group: its batch hook too)."""
    fn = get_estimator(estimator)
    check_options(estimator, options)
    adv = fn(rewards, clusters, **options)
    hook = get_batch_hook(fn)
    if hook is not None:
        r = check_rewards(rewards)
        adv = hook(adv, rewards=r, clusters=clusters, groups=[np.arange(r.size)], **options)
    return adv


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
    prompt_keys: Sequence[object] | None = None,
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
        prompt_keys: optionally one prompt key per rollout (the same within a group, stable
            across steps, e.g. the problem id); an estimator that takes ``prompt_key`` (the
            historical ``outcome_explore``) receives its group's key.
        **options: the estimator's options (``set_size``, ``reduction`` ...) and runtime
            options (``history``).

    Returns:
        ``float64[B]``, aligned with ``rewards``: the per-group step on every group, then the
        estimator's batch hook (if any) over the whole batch.
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
    keys = _prompt_keys(prompt_keys, r.size, estimator, options)
    groups = _group_slices(r.size, group_sizes, group_ids)
    out = np.empty(r.size)
    for g, idx in enumerate(groups):
        if idx.size == 1 and singletons != "estimator":
            out[idx] = r[idx] if singletons == "reward" else 0.0
            continue
        opts = options if keys is None else {**options, "prompt_key": _group_key(keys, idx, g)}
        if short_groups == "shrink" and isinstance(set_size, (int, np.integer)) and set_size > idx.size:
            opts = {**opts, "set_size": int(idx.size)}
        try:
            out[idx] = fn(r[idx], None if c is None else c[idx], **opts)
        except ValueError as e:
            raise type(e)(f"group {g} (rollouts {idx.tolist()[:8]}{'...' if idx.size > 8 else ''}): {e}") from e
    hook = get_batch_hook(fn)
    if hook is not None:
        out = hook(out, rewards=r, clusters=c, groups=groups, **options)
    return out


def _prompt_keys(prompt_keys, total: int, estimator: str, options: dict) -> np.ndarray | None:
    """Per-rollout prompt keys, or None when the estimator does not take ``prompt_key``."""
    if prompt_keys is None or "prompt_key" not in runtime_options(estimator):
        return None
    if "prompt_key" in options:
        raise ValueError("give prompt_keys (one per rollout) or the option prompt_key, not both")
    keys = np.asarray(list(prompt_keys), dtype=object)
    if keys.shape != (total,):
        raise ValueError(f"prompt_keys has {keys.size} entries; expected {total}, one per rollout")
    return keys


def _group_key(keys: np.ndarray, idx: np.ndarray, g: int) -> object:
    distinct = {str(k) for k in keys[idx]}
    if len(distinct) != 1:
        raise ValueError(f"group {g} has rollouts of {len(distinct)} prompts (prompt_keys "
                         f"{sorted(distinct)[:4]}); a group is one prompt's rollouts")
    return keys[idx[0]]


__all__ = [
    "ESTIMATORS",
    "HISTORY_FILE",
    "NEEDS_CLUSTERS",
    "RUNTIME_OPTIONS",
    "SET_OBJECTIVES",
    "SHARED_OPTIONS",
    "SHORT_GROUPS",
    "SINGLETONS",
    "AnswerHistory",
    "BatchHook",
    "UnknownNameError",
    "all_subsets",
    "batch_hook",
    "check_option_values",
    "check_options",
    "compute_advantages",
    "darling_advantages",
    "diversity_bonus",
    "dr_grpo_advantages",
    "estimator_options",
    "get_estimator",
    "group_advantages",
    "grpo_advantages",
    "grpo_div_advantages",
    "marginal_from_sets",
    "needs_history",
    "outcome_explore_advantages",
    "pass_at_k_advantages",
    "pkpo_advantages",
    "poly_epo_advantages",
    "reinforce_pp_baseline_advantages",
    "rloo_advantages",
    "runtime_options",
    "sample_subsets",
    "set_rl_advantages",
    "shared_option_default",
    "uniqueness_advantages",
    "whiten_batch",
    "with_batch_hook",
]
