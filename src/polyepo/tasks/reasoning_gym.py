"""Procedural reasoning tasks from the ``reasoning-gym`` package (offline), with its own scorers.

Any of reasoning-gym's ~100 generators (``basic_arithmetic``, ``gsm_symbolic``, ``countdown``,
...) becomes a task with a ``train`` and a ``test`` split drawn with different seeds. The
answer is taken from the response (``\\boxed{}``, "answer is", or the last number, see
:func:`polyepo.rewards.math.extract_answer`) and scored by the generator's own
``score_answer`` (1.0 right, partial credit where the generator gives it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..rewards import REWARDS
from . import TASKS
from .base import Component

SPLITS = ("train", "test")
INSTRUCTION = "\n\nThink step by step, then put the final answer inside \\boxed{}."


def _require():
    try:
        import reasoning_gym
    except ImportError:
        raise ImportError("reasoning-gym tasks need the reasoning-gym package: pip install 'polyepo[rewards]'") from None
    return reasoning_gym


@TASKS.register("reasoning_gym")
class ReasoningGymTask:
    """Any reasoning-gym generator (offline), scored by the generator's own score_answer.

    Args:
        dataset: the generator's name (see ``reasoning_gym.factory.DATASETS``).
        config: the generator's own options (difficulty ...).
        sizes: rows per split.
        seed: the train split uses ``seed``, the test split ``seed + 1``.
        instruction: appended to each question.
        clusterer: strategy clusterer for the task (default ``embedding``; ``judge`` with a
            math prompt is the paper's choice when an endpoint is available).
    """

    name = "reasoning_gym"
    splits = SPLITS

    def __init__(self, dataset: str = "basic_arithmetic", config: dict[str, Any] | None = None,
                 sizes: dict[str, int] | None = None, seed: int = 0, instruction: str = INSTRUCTION,
                 clusterer: str = "embedding") -> None:
        rg = _require()
        if dataset not in rg.factory.DATASETS:
            raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; for example: "
                             f"{', '.join(sorted(rg.factory.DATASETS)[:12])} ... ({len(rg.factory.DATASETS)} in all)")
        self.dataset, self.config, self.seed = dataset, dict(config or {}), seed
        self.sizes = {"train": 1000, "test": 200, **(sizes or {})}
        self.instruction, self._clusterer = instruction, clusterer

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for reasoning_gym; valid splits: {', '.join(SPLITS)}")
        rg = _require()
        size = self.sizes[split] if limit is None else min(limit, self.sizes[split])
        ds = rg.create_dataset(self.dataset, size=max(size, 1), seed=self.seed + SPLITS.index(split), **self.config)
        out = []
        for i in range(size):
            entry = ds[i]
            out.append({"prompt": entry["question"] + self.instruction, "problem_id": f"{self.dataset}/{split}/{i}",
                        "answer": str(entry["answer"]), "rg_dataset": self.dataset,
                        "rg_entry": json.dumps(entry, default=str)})
        return out

    @property
    def reward(self) -> Component:
        return Component("reasoning_gym")

    @property
    def clusterer(self) -> Component:
        return Component(self._clusterer)


@REWARDS.register("reasoning_gym")
def make_reasoning_gym_reward():
    """Score the extracted final answer with the generator's own ``score_answer``.

    Reads the ``rg_dataset`` and ``rg_entry`` columns (rows of the ``reasoning_gym`` task). A
    response with no extractable answer scores 0.0 (a wrong answer, not a failure).
    ``last_stats``: ``no_answer`` (responses with no answer found), ``scored``, ``time_s``.
    """
    rg = _require()
    from ..rewards.math import extract_answer

    scorers: dict[str, Any] = {}

    def reasoning_gym_reward(prompts, completions, rg_dataset, rg_entry, **_: Any) -> list[float]:
        start = time.perf_counter()
        out, missing = [], 0
        for completion, name, entry in zip(completions, rg_dataset, rg_entry, strict=True):
            answer = extract_answer(completion)
            if answer is None:
                missing += 1
                out.append(0.0)
                continue
            if name not in scorers:
                scorers[name] = rg.get_score_answer_fn(name)
            out.append(float(scorers[name](answer, json.loads(entry) if isinstance(entry, str) else entry)))
        reasoning_gym_reward.last_stats = {"no_answer": missing, "scored": len(out), "time_s": time.perf_counter() - start}
        return out

    reasoning_gym_reward.last_stats = {}
    return reasoning_gym_reward
