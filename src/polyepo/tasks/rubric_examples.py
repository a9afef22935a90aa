"""``rubric_examples``: a handful of math and code problems with reference solutions.

The shipped example of rubric rewards (docs/rubric.md): four multi-step math problems and
three coding problems, each with a reference solution written for polyepo and a hand-written
rubric (``src/polyepo/data/rubric/``). Rows carry the reference in their ``reference`` column,
which only the judge reads; the policy's prompt is built from the problem statement alone. Math
rows also carry a gold ``answer`` and code rows a HumanEval-style ``test`` and ``entry_point``,
for a verifiable reward mixed in with ``verifiable=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import TASKS
from .base import Component

DATA = Path(__file__).resolve().parents[1] / "data" / "rubric"
KINDS = ("math", "code", "all")
MATH_PROMPT = "Solve the following problem. Show your reasoning step by step, then give the final answer as \\boxed{{...}}.\n\nProblem: {problem}"
CODE_PROMPT = "{problem}\n\nExplain your approach briefly, then give the complete function in one ```python code block."


def load_problems() -> list[dict[str, Any]]:
    """The shipped problems (dicts with problem_id, kind, problem, reference, and answer or test/entry_point)."""
    return yaml.safe_load((DATA / "problems.yaml").read_text(encoding="utf-8"))


def policy_prompt(problem: dict[str, Any]) -> str:
    """The prompt the policy sees: the problem statement and the answer format, nothing else."""
    template = MATH_PROMPT if problem["kind"] == "math" else CODE_PROMPT
    return template.format(problem=" ".join(problem["problem"].split()))


@TASKS.register("rubric_examples")
@dataclass
class RubricExamplesTask:
    """The shipped rubric example. The one split ``train`` holds every problem of ``kind``.

    Args:
        kind: ``math``, ``code`` or ``all``.
        verifiable: mix a verifiable reward into the rubric reward: ``math_answer`` for math,
            ``code_tests`` for code (needs ``kind`` math or code).
        shipped_rubrics: rows point at the hand-written rubric files; False leaves the rubric
            column empty, so the judge builds each rubric (into the reward's ``rubric_dir``).
        repeat: each problem appears this many times in the split (RL revisits problems).
    """

    kind: str = "all"
    verifiable: bool = False
    shipped_rubrics: bool = True
    repeat: int = 1
    name: str = "rubric_examples"
    splits: tuple[str, ...] = ("train",)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.verifiable and self.kind == "all":
            raise ValueError("verifiable=True needs kind='math' (math_answer) or kind='code' (code_tests)")
        if self.repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {self.repeat!r}")

    @property
    def reward(self) -> Component:
        options: dict[str, Any] = {}
        if self.verifiable:
            options["verifiable"] = "math_answer" if self.kind == "math" else "code_tests"
        return Component("rubric", options)

    @property
    def clusterer(self) -> Component:
        if self.kind == "math":
            return Component("answer", {"key": "math"})
        if self.kind == "code":
            return Component("python_ast")
        return Component("embedding")

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for rubric_examples; valid splits: {', '.join(self.splits)}")
        out = []
        for p in load_problems():
            if self.kind not in ("all", p["kind"]):
                continue
            rubric = DATA / "rubrics" / f"{p['problem_id']}.yaml"
            out.append({
                "prompt": policy_prompt(p),
                "problem_id": p["problem_id"],
                "problem": " ".join(p["problem"].split()),
                "reference": p["reference"],
                "rubric": str(rubric) if self.shipped_rubrics else "",
                "kind": p["kind"],
                "answer": p.get("answer"),
                "test": p.get("test"),
                "entry_point": p.get("entry_point"),
            })
        out = [dict(r) for _ in range(self.repeat) for r in out]
        return out if limit is None else out[:limit]
