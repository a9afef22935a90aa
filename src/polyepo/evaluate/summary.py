"""Metrics of a results file, each a mean over problems with two standard errors.

Every per-problem figure is exact given the n stored samples (pass@k, distinct@k, best-of-k)
except majority@k below k = n (Monte Carlo, seeded). Uncertainty is over problems: the
standard error of the mean (std / sqrt(P)) and a seeded bootstrap over problems. Nothing is
extrapolated: a k above n is skipped with a note.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..metrics import (
    best_of_k,
    bootstrap_standard_error,
    distinct_at_k,
    keys_decide_correctness,
    majority_at_k,
    pass_at_k,
    powers_of_two,
    standard_error,
)
from .results import Results, read_results

DEGENERATE = (0, 100)
log = logging.getLogger("polyepo.evaluate")


@dataclass
class Estimate:
    """A mean over problems with its standard error and its bootstrap standard error."""

    mean: float
    se: float
    se_boot: float

    def fmt(self, digits: int = 3) -> str:
        se = "n/a" if np.isnan(self.se) else f"{self.se:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {se}"


@dataclass
class Summary:
    """Metrics of one results file (see docs/evaluation.md for each definition)."""

    label: str
    path: str
    task: str
    split: str
    n: int
    problems: int
    ks: list[int]
    pass_at_k: dict[int, Estimate]
    distinct_at_k: dict[int, Estimate]
    distinct_correct: Estimate
    majority_at_k: dict[int, Estimate] | None
    best_of_k: dict[int, Estimate] | None
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    per_problem: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _estimates(matrix: np.ndarray, ks: list[int], rng: np.random.Generator, draws: int) -> dict[int, Estimate]:
    """``matrix``: shape (P, K), one column per k -> {k: Estimate}."""
    se = standard_error(matrix)
    boot = bootstrap_standard_error(matrix, draws=draws, rng=rng)
    means = matrix.mean(axis=0)
    return {k: Estimate(float(means[j]), float(se[j]), float(boot[j])) for j, k in enumerate(ks)}


def choose_ks(n: int, requested: Iterable[int] | None, notes: list[str]) -> list[int]:
    """Powers of two up to n plus the requested k; k > n is skipped with a note."""
    ks = set(powers_of_two(n))
    for k in requested or ():
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if k > n:
            notes.append(f"k = {k} skipped: only n = {n} samples per problem (pass@k is never extrapolated)")
        else:
            ks.add(k)
    return sorted(ks)


def _correct_per_cluster(clusters: list[int | None], correct: list[bool], degenerate: Collection[int]) -> list[int]:
    return list(Counter(c for c, ok in zip(clusters, correct) if ok and c is not None and c not in degenerate).values())


def summarize(
    results: Results | str | os.PathLike,
    *,
    ks: Iterable[int] | None = None,
    problem_ids: Collection[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    majority_draws: int = 1000,
    degenerate: Collection[int] = DEGENERATE,
) -> Summary:
    """Metrics of a results file over its problems (or the ``problem_ids`` among them).

    Args:
        results: a :class:`Results` or the path of a results file.
        ks: extra k values besides the powers of two up to n (k > n is skipped with a note).
        problem_ids: keep only these problems (e.g. from :func:`pass_rate_filter`).
        bootstrap: bootstrap resamples of the problems for ``se_boot``.
        seed: seeds the bootstrap and the majority@k Monte Carlo.
        majority_draws: random subsets per problem for majority@k below k = n.
        degenerate: cluster ids that are no strategy (not counted as distinct, do not vote).
    """
    res = results if isinstance(results, Results) else read_results(results)
    notes: list[str] = []
    problems = res.problems
    if not res.complete:
        notes.append(f"incomplete file: {len(problems)} of {res.header['task'].get('problems')} problems scored")
    if problem_ids is not None:
        keep = set(problem_ids)
        missing = keep - {p["problem_id"] for p in problems}
        if missing:
            raise ValueError(f"{len(missing)} filtered problem ids are not in {res.path} "
                             f"(e.g. {sorted(missing)[:3]}): was the filter made on another task or split?")
        problems = [p for p in problems if p["problem_id"] in keep]
        notes.append(f"filtered: {len(problems)} of {len(res.problems)} problems kept")
    if not problems:
        raise ValueError(f"{res.path}: no scored problems to summarize")
    n = res.n
    ks = choose_ks(n, ks, notes)
    rng = np.random.default_rng(seed)
    verdicts = [res.correct(p) for p in problems]
    c = [sum(v) for v in verdicts]
    degs = [_degenerate_ids(p, degenerate) for p in problems]
    per_cluster = [_correct_per_cluster(p["clusters"], v, d) for p, v, d in zip(problems, verdicts, degs)]
    passk = np.array([[pass_at_k(n, ci, k) for k in ks] for ci in c])
    dist = np.array([[distinct_at_k(m, n, k) for k in ks] for m in per_cluster])
    summary = Summary(
        label=res.label, path=str(res.path), task=res.header["task"]["name"], split=res.header["task"]["split"],
        n=n, problems=len(problems), ks=ks,
        pass_at_k=_estimates(passk, ks, rng, bootstrap), distinct_at_k=_estimates(dist, ks, rng, bootstrap),
        distinct_correct=_estimates(dist[:, -1:], [n], rng, bootstrap)[n],
        majority_at_k=_majority(problems, verdicts, ks, rng, bootstrap, majority_draws, degs, notes),
        best_of_k=_best_of(problems, ks, rng, bootstrap, notes),
        counts=_counts(problems, verdicts, degs), notes=notes,
        per_problem=[{"problem_id": p["problem_id"], "correct": ci, "distinct_correct": len(m)}
                     for p, ci, m in zip(problems, c, per_cluster)],
    )
    counts = summary.counts
    if counts["unclustered_correct"]:
        notes.append(f"{counts['unclustered_correct']} correct samples have no cluster id")
    if counts["cluster_failures"]:
        policies = sorted({str(p.get("cluster_info", {}).get("policy")) for p in problems
                           if p.get("cluster_info", {}).get("failed")})
        notes.append(f"clustering failed on {counts['cluster_failures']} problems (policy: {', '.join(policies)}): "
                     "their cluster ids come from that policy; re-cluster with `polyepo rescore --what clusters`")
    if counts["reward_none"]:
        notes.append(f"{counts['reward_none']} samples have no reward (the reward function did not apply); "
                     "they count as not correct")
    warning = diversity_check(res, problems, degenerate)
    if warning:
        notes.append(warning)
    return summary


def warn_degenerate_diversity(results: Results) -> None:
    """Log the degenerate-diversity warning of a results file, if it has one (docs/training.md)."""
    warning = diversity_check(results)
    if warning:
        log.warning("warning: %s", warning)


def diversity_check(results: Results, problems: list[dict[str, Any]] | None = None,
                    degenerate: Collection[int] = DEGENERATE) -> str | None:
    """The training's degenerate-diversity check (:mod:`polyepo.groups.watch`) over the problems
    of a results file: each problem's clustered samples are one group (a problem with fewer than
    two is left out; so is one whose clustering failed and got a stand-in)."""
    from ..clustering.metrics import STAND_IN_POLICIES
    from ..groups.watch import GroupTally, diversity_warning

    tally = GroupTally()
    for p in results.problems if problems is None else problems:
        info = p.get("cluster_info", {})
        ids = [c for c in p["clusters"] if c is not None]
        if len(ids) >= 2 and not (info.get("failed") and info.get("policy") in STAND_IN_POLICIES):
            tally.add(ids, _degenerate_ids(p, degenerate))
    name = str(results.header.get("clusterer", {}).get("name", "?"))
    return diversity_warning(tally, clusterer=name, unit="problems", item="sample",
                             where=f"the problems of {results.path}")


def _degenerate_ids(problem: dict[str, Any], degenerate: Collection[int]) -> set[int]:
    """The given degenerate ids plus the one the clusterer reported for this problem, if any."""
    own = problem.get("cluster_info", {}).get("degenerate")
    return {int(d) for d in degenerate} | ({int(own)} if own is not None else set())


def _majority(problems, verdicts, ks, rng, draws_boot, draws, degs, notes) -> dict[int, Estimate] | None:
    if not all(keys_decide_correctness(p["clusters"], v, degenerate=d) for p, v, d in zip(problems, verdicts, degs)):
        notes.append("majority@k not applicable: the cluster ids do not decide correctness "
                     "(some strategy has both correct and wrong samples)")
        return None
    rows = [majority_at_k(p["clusters"], v, ks, draws=draws, rng=rng, degenerate=d)
            for p, v, d in zip(problems, verdicts, degs)]
    return _estimates(np.array([[r[k] for k in ks] for r in rows]), ks, rng, draws_boot)


def _best_of(problems, ks, rng, draws_boot, notes) -> dict[int, Estimate] | None:
    values = [[0.0 if r is None else float(r) for r in p["rewards"]] for p in problems]
    if all(v in (0.0, 1.0) for row in values for v in row):
        notes.append("best-of-k (oracle, by reward) equals pass@k here: the rewards are 0/1")
        return None
    return _estimates(np.array([[best_of_k(row, k) for k in ks] for row in values]), ks, rng, draws_boot)


def _counts(problems, verdicts, degs) -> dict[str, int]:
    flat = [(r, c, f, ok, d) for p, v, d in zip(problems, verdicts, degs)
            for r, c, f, ok in zip(p["rewards"], p["clusters"], p.get("finished", [True] * len(v)), v)]
    return {
        "samples": len(flat),
        "correct": sum(ok for _, _, _, ok, _ in flat),
        "reward_none": sum(r is None for r, *_ in flat),
        "unfinished": sum(not f for _, _, f, _, _ in flat),
        "degenerate": sum(c is not None and c in d for _, c, _, _, d in flat),
        "unclustered_correct": sum(c is None and ok for _, c, _, ok, _ in flat),
        "cluster_failures": sum(bool(p.get("cluster_info", {}).get("failed")) for p in problems),
    }


def pass_rate_filter(
    base: Results | str | os.PathLike, low: int = 1, high: int = 12, m: int | None = None
) -> tuple[list[str], str]:
    """Problems a base model solved between ``low`` and ``high`` times (inclusive) out of ``m``.

    Uses the first ``m`` samples of each problem of ``base`` (default: all n). Seed 002 kept
    problems solved 1..12 times out of 16. Returns ``(problem_ids, description)``.
    """
    res = base if isinstance(base, Results) else read_results(base)
    m = res.n if m is None else int(m)
    if not 1 <= m <= res.n:
        raise ValueError(f"m must be in [1, n] = [1, {res.n}] for {res.path}, got {m}")
    if not 0 <= low <= high <= m:
        raise ValueError(f"need 0 <= low <= high <= m, got low={low}, high={high}, m={m}")
    ids = [p["problem_id"] for p in res.problems if low <= sum(res.correct(p)[:m]) <= high]
    return ids, f"solved {low}..{high} of {m} by {res.label} ({res.path}): {len(ids)} of {len(res.problems)} problems"
