"""Scoring and clustering the samples of one problem, and re-scoring a whole results file.

Rewards are read and groups clustered as the group step does (:mod:`polyepo.groups`: None =
unscorable, one clustering call path with its checks), so evaluation and training agree on
both. Rewards and clusterers come from the registries (:data:`polyepo.rewards.REWARDS`,
:data:`polyepo.clustering.CLUSTERERS`), so any registered backend plugs in unchanged. The
reward function is called as TRL calls it: ``f(prompts=..., completions=..., **columns)``
with the problem's columns repeated once per sample, completions in conversational form
(``[{"role": "assistant", "content": text}]``) when the prompt is a chat.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..clustering import make_clusterer
from ..clustering.base import Group, prompt_text
from ..groups import as_rewards, cluster_groups
from ..rewards import make_reward
from ..tasks.base import Component
from .results import Results, read_results, write_results
from .summary import warn_degenerate_diversity

#: Problems re-clustered per ``cluster_many`` call (a judge backend sends them concurrently).
RESCORE_BLOCK = 32


def as_component(choice: str | Component | dict | None, options: dict[str, Any] | None, default: Component,
                 what: str) -> Component:
    """A :class:`Component` from a name (plus options), a Component, a header dict, or None (=
    ``default``, whose options the given ones update, as in a run config)."""
    if choice is None:
        if options and default.name == "?":
            raise ValueError(f"{what} options given without a {what} name")
        return Component(default.name, {**default.options, **options}) if options else default
    if isinstance(choice, Component):
        return Component(choice.name, {**choice.options, **(options or {})})
    if isinstance(choice, dict):
        return Component(choice["name"], {**choice.get("options", {}), **(options or {})})
    return Component(str(choice), dict(options or {}))


def component_dict(component: Component) -> dict[str, Any]:
    return {"name": component.name, "options": dict(component.options)}


def score_problem(reward_fn: Any, problem: dict[str, Any]) -> tuple[list[float | None], dict[str, Any]]:
    """Rewards of one problem's completions and what the reward function reported."""
    completions = problem["completions"]
    n = len(completions)
    if isinstance(problem["prompt"], list):
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    columns = {k: [v] * n for k, v in problem.get("columns", {}).items()}
    rewards = reward_fn(prompts=[problem["prompt"]] * n, completions=completions, **columns)
    name = getattr(reward_fn, "__name__", "reward")
    if len(rewards) != n:
        raise ValueError(f"reward function {name!r} returned {len(rewards)} values for {n} completions")
    try:  # the group step's reading of rewards: None (or NaN) = unscorable, inf and non-numbers raise
        values = as_rewards(rewards)
    except ValueError as e:
        raise ValueError(f"reward function {name!r} on problem {problem['problem_id']!r}: {e}") from None
    out: list[float | None] = [None if math.isnan(v) else float(v) for v in values]
    stats = getattr(reward_fn, "last_stats", None)
    return out, dict(stats) if isinstance(stats, dict) else {}


def cluster_problem(clusterer: Any, problem: dict[str, Any], correct: Sequence[bool],
                    only_correct: bool = False) -> tuple[list[int | None], dict[str, Any]]:
    """Cluster ids of one problem's completions (None where not clustered) and what happened."""
    return cluster_problems(clusterer, [problem], [list(correct)], only_correct)[0]


def _place(res: Any, idx: list[int], n: int) -> tuple[list[int | None], dict[str, Any]]:
    """Spread a ClusterResult over the ``idx`` positions of n samples; the rest stay None."""
    if len(res.ids) != len(idx):
        raise ValueError(f"clusterer {res.backend!r} returned {len(res.ids)} ids for {len(idx)} responses")
    ids: list[int | None] = [None] * n
    for i, c in zip(idx, res.ids):
        ids[i] = int(c)
    info = {"backend": res.backend, "clustered": len(idx), "failed": res.failed, "policy": res.policy,
            "error": res.error, "retries": res.retries, "requests": getattr(res, "requests", 0),
            "reasks": getattr(res, "reasks", 0), "cache_hit": res.cache_hit,
            "degenerate": getattr(res, "degenerate", None)}
    return ids, {k: v for k, v in info.items() if v not in (None, False, 0) or k in ("backend", "clustered")}


def cluster_problems(clusterer: Any, problems: list[dict[str, Any]], correct: list[list[bool]],
                     only_correct: bool = False) -> list[tuple[list[int | None], dict[str, Any]]]:
    """:func:`cluster_problem` for many problems, through the group step's clustering call
    (:func:`polyepo.groups.cluster_groups`: ``cluster_many`` when the backend has it, so a judge
    sends the groups concurrently; every result checked)."""
    picks = [[i for i, ok in enumerate(c) if ok] if only_correct else list(range(len(c))) for c in correct]
    todo = [j for j, idx in enumerate(picks) if idx]
    groups = [Group(prompt_text(problems[j]["prompt"]), [problems[j]["completions"][i] for i in picks[j]],
                    dict(problems[j].get("columns", {}))) for j in todo]
    found, _ = cluster_groups(clusterer, groups, labels=[problems[j]["problem_id"] for j in todo])
    results = dict(zip(todo, found))
    name = getattr(clusterer, "name", "?")
    return [_place(results[j], picks[j], len(c)) if j in results else ([None] * len(c), {"backend": name, "clustered": 0})
            for j, c in enumerate(correct)]


def correct_of(rewards: Sequence[float | None], threshold: float) -> list[bool]:
    return [r is not None and r >= threshold for r in rewards]


class ScoreTally:
    """Running figures of the problems scored so far, for the progress display: how many,
    the mean reward (over scored samples), the mean number of distinct correct clusters."""

    def __init__(self, problems: int, threshold: float, scored: Sequence[dict[str, Any]] = ()) -> None:
        self.problems, self.threshold = problems, threshold
        self.count, self.reward_sum, self.rewards, self.distinct = 0, 0.0, 0, 0
        for prob in scored:
            self.add(prob)

    def add(self, prob: dict[str, Any]) -> None:
        from .summary import DEGENERATE

        own = prob.get("cluster_info", {}).get("degenerate")
        degenerate = {*DEGENERATE, *(() if own is None else (int(own),))}
        correct = correct_of(prob["rewards"], self.threshold)
        scored = [float(r) for r in prob["rewards"] if r is not None]
        self.count += 1
        self.reward_sum += sum(scored)
        self.rewards += len(scored)
        self.distinct += len({c for c, ok in zip(prob["clusters"], correct) if ok and c is not None} - degenerate)

    def text(self) -> str:
        if not self.count:
            return f"0/{self.problems} problems scored"
        reward = f"{self.reward_sum / self.rewards:.3g}" if self.rewards else "n/a"
        return (f"{self.count}/{self.problems} problems scored, reward {reward}, "
                f"distinct correct {self.distinct / self.count:.3g}")


def rescore(
    path: str | os.PathLike, out: str | os.PathLike | None = None, *,
    reward: str | Component | None = None, reward_options: dict[str, Any] | None = None,
    clusterer: str | Component | None = None, clusterer_options: dict[str, Any] | None = None,
    only_correct: bool | None = None, correct_threshold: float | None = None,
    rewards: bool = True, clusters: bool = True, progress: bool = True,
) -> Path:
    """Re-score and/or re-cluster the samples of a results file, without sampling again.

    Args:
        path: a finished results file.
        out: where to write the new file (default: overwrite ``path``, atomically).
        reward, reward_options: reward function (default: the one recorded in the file).
        clusterer, clusterer_options: clusterer (default: the one recorded in the file).
        only_correct: cluster only correct samples (default: as recorded).
        correct_threshold: a sample is correct when its reward is >= this (default: as recorded).
        rewards, clusters: which of the two to recompute (clusters are recomputed whenever the
            verdicts may change and ``only_correct`` is on).
        progress: show a progress bar.
    """
    from ..progress import progress_bar

    res = read_results(path)
    if res.chunks:
        raise ValueError(f"{path} has unscored problems (an interrupted run): resume it with `polyepo eval` first")
    header = dict(res.header)
    rew = as_component(reward if reward is not None else header["reward"], reward_options, Component("?"), "reward")
    clu = as_component(clusterer if clusterer is not None else header["clusterer"], clusterer_options,
                       Component("?"), "clusterer")
    only = header["clusterer"].get("only_correct", False) if only_correct is None else bool(only_correct)
    threshold = res.correct_threshold if correct_threshold is None else float(correct_threshold)
    header.update(reward=component_dict(rew), clusterer={**component_dict(clu), "only_correct": only},
                  correct_threshold=threshold, rescored_from=str(Path(path)))
    reward_fn = make_reward(rew.name, **rew.options) if rewards else None
    cl = make_clusterer(clu.name, **clu.options) if clusters or only else None
    problems = [dict(p) for p in res.problems]
    tally = ScoreTally(len(problems), threshold)
    with progress_bar(progress) as bar:
        task = bar.add_task("re-scoring", total=len(problems), metrics=tally.text())
        for start in range(0, len(problems), RESCORE_BLOCK):
            block = problems[start:start + RESCORE_BLOCK]
            for prob in block:
                if reward_fn is not None:
                    prob["rewards"], prob["reward_info"] = score_problem(reward_fn, prob)
            if cl is not None:
                verdicts = [correct_of(p["rewards"], threshold) for p in block]
                for prob, (ids, info) in zip(block, cluster_problems(cl, block, verdicts, only)):
                    prob["clusters"], prob["cluster_info"] = ids, info
            for prob in block:
                tally.add(prob)
            bar.advance(task, len(block), metrics=tally.text())
    written = write_results(out if out is not None else path, header, problems)
    warn_degenerate_diversity(Results(written, header, problems))
    return written
