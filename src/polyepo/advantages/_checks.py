"""Input validation shared by every estimator: one place, one wording."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

REDUCTIONS = ("sum", "mean")


def check_rewards(rewards: object, name: str = "rewards") -> np.ndarray:
    """A group's rewards as a 1-D float64 array; rejects empty, non-numeric, NaN and inf."""
    try:
        r = np.asarray(rewards, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got {rewards!r}") from None
    if r.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one group's N rollouts), got shape {r.shape}")
    if r.size == 0:
        raise ValueError(f"{name} is empty: a group needs at least 1 rollout")
    bad = ~np.isfinite(r)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite; {name}[{i}] = {r[i]} "
            f"({int(bad.sum())} non-finite value(s)). A failed reward must be handled by "
            "its policy upstream, not passed in as NaN/inf."
        )
    return r


def check_clusters(clusters: object, size: int, name: str = "clusters") -> np.ndarray:
    """Cluster ids as a 1-D int64 array of length ``size``; rejects non-integers."""
    if clusters is None:
        raise ValueError(f"{name} are required by this estimator (one integer id per rollout)")
    try:
        raw = np.asarray(clusters)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of integer ids") from None
    if raw.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {raw.shape}")
    if raw.size != size:
        raise ValueError(
            f"{name} has length {raw.size} but rewards has length {size}: "
            "give exactly one cluster id per rollout"
        )
    if raw.size and raw.dtype.kind not in "iub":
        try:
            as_float = raw.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be integer ids, got dtype {raw.dtype}") from None
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise ValueError(f"{name} must be integer ids, got {raw.tolist()}")
        raw = as_float
    return raw.astype(np.int64)


def check_set_size(set_size: object, group_size: int) -> int:
    """``set_size`` as an int in [1, N]."""
    if isinstance(set_size, bool) or not isinstance(set_size, (int, np.integer)):
        raise ValueError(f"set_size must be an integer in [1, {group_size}], got {set_size!r}")
    n = int(set_size)
    if not 1 <= n <= group_size:
        raise ValueError(
            f"set_size must be in [1, N] = [1, {group_size}] for a group of N={group_size} "
            f"rollouts, got {n}"
        )
    return n


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    return reduction


def check_min_distinct(min_distinct: object) -> int:
    if isinstance(min_distinct, bool) or not isinstance(min_distinct, (int, np.integer)):
        raise ValueError(f"min_distinct must be an integer >= 0, got {min_distinct!r}")
    if min_distinct < 0:
        raise ValueError(f"min_distinct must be >= 0, got {min_distinct}")
    return int(min_distinct)


def check_degenerate(degenerate: Iterable[int] | None) -> np.ndarray:
    if degenerate is None:
        return np.zeros(0, dtype=np.int64)
    if isinstance(degenerate, (int, np.integer)):
        degenerate = (int(degenerate),)
    try:
        return np.asarray(sorted({int(d) for d in degenerate}), dtype=np.int64)
    except (TypeError, ValueError):
        raise ValueError(f"degenerate must be a collection of integer ids, got {degenerate!r}") from None


def check_finite_number(value: object, name: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    return v
