"""Problem sets that users bring as JSONL files: code (leetcode2k-, LiveCodeBench-style) and math.

Nothing is downloaded: point the task at local files, one per split. Every line is a JSON
object. Bad files fail with the file, the line number and the missing field.

``jsonl_code`` rows need a statement (``prompt``, ``question``, ``problem`` or ``content``) and
tests in one of three forms:

- ``test`` (code defining ``check(candidate)`` or plain asserts) plus ``entry_point``, as
  HumanEval and leetcode2k;
- ``test_cases``: a list of ``{"input": ..., "output": ...}`` for stdin/stdout programs;
- ``input_output``: LiveCodeBench/TACO style ``{"inputs": [...], "outputs": [...]}`` (or its JSON).

``jsonl_math`` rows need a statement and an ``answer`` (a value, or a solution with ``\\boxed{}``).
``keep_ids`` restricts a task to the problem ids listed in a file (one per line), e.g. the
problems a base model solves between 1 and 12 times out of 16 (seed 002's filter; see
``polyepo metrics --help``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io import read_jsonl
from . import TASKS
from .base import Component

STATEMENT_FIELDS = ("prompt", "question", "problem", "content")
ID_FIELDS = ("problem_id", "task_id", "id", "question_id")
CODE_INSTRUCTION = "{statement}\n\nWrite a Python solution. Reply with the complete code in a single ```python code block."
MATH_INSTRUCTION = "{statement}\n\nThink step by step, then put the final answer inside \\boxed{{}}."


def _first(obj: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((obj[f] for f in fields if obj.get(f) not in (None, "")), None)


class _JsonlTask:
    name = "jsonl"
    instruction = "{statement}"

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None) -> None:
        self.paths = {k: v for k, v in (("train", train), ("test", test)) if v}
        if not self.paths:
            raise ValueError(f"{self.name} needs at least one of train=PATH, test=PATH (JSONL files)")
        self.keep = None
        if keep_ids:
            self.keep = {line.strip() for line in Path(keep_ids).expanduser().read_text().splitlines() if line.strip()}
        self.chat = chat
        self.instruction = instruction or self.instruction

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.paths)

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in self.paths:
            raise ValueError(f"unknown split {split!r} for {self.name}; valid splits: {', '.join(self.paths)}")
        out = []
        for i, obj in enumerate(read_jsonl(self.paths[split]), 1):
            where = f"{self.paths[split]}:{i}"
            statement = _first(obj, STATEMENT_FIELDS)
            if statement is None:
                raise ValueError(f"{where}: no problem statement (one of {', '.join(STATEMENT_FIELDS)})")
            pid = str(_first(obj, ID_FIELDS) or f"{split}-{i}")
            if self.keep is not None and pid not in self.keep:
                continue
            text = self.instruction.format(statement=statement)
            row = {"prompt": [{"role": "user", "content": text}] if self.chat else text, "problem_id": pid}
            row.update(self._columns(obj, where))
            out.append(row)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        raise NotImplementedError


@TASKS.register("jsonl_code")
class JsonlCodeTask(_JsonlTask):
    """Code problems from local JSONL files, scored by sandboxed tests (``code_tests``).

    Args:
        train, test: JSONL paths of the splits.
        keep_ids: a file of problem ids to keep (one per line).
        chat: prompts as one user message (for chat models) or as plain text.
        instruction: the prompt template (``{statement}`` is replaced).
        timeout_s, memory_mb, strict_returns: the sandbox limits and options of ``code_tests``.
        clusterer: the strategy clusterer (default ``python_ast``; ``judge`` as seed 002).
    """

    name = "jsonl_code"
    instruction = CODE_INSTRUCTION

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None, timeout_s: float = 6.0, memory_mb: int = 1024,
                 strict_returns: bool = True, clusterer: str = "python_ast") -> None:
        super().__init__(train, test, keep_ids=keep_ids, chat=chat, instruction=instruction)
        self.reward_options = {"timeout_s": timeout_s, "memory_mb": memory_mb, "strict_returns": strict_returns}
        self._clusterer = clusterer

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        if obj.get("test"):
            return {"test": obj["test"], "entry_point": obj.get("entry_point"), "code_prompt": obj.get("code_prompt")}
        if obj.get("test_cases"):
            return {"test_cases": json.dumps(obj["test_cases"]) if not isinstance(obj["test_cases"], str) else obj["test_cases"]}
        io = obj.get("input_output")
        if io:
            io = json.loads(io) if isinstance(io, str) else io
            cases = [{"input": a, "output": b} for a, b in zip(io.get("inputs", []), io.get("outputs", []))]
            if cases:
                return {"test_cases": json.dumps(cases)}
        raise ValueError(f"{where}: no tests: give 'test' (+ 'entry_point'), 'test_cases' or 'input_output'")

    @property
    def reward(self) -> Component:
        return Component("code_tests", dict(self.reward_options))

    @property
    def clusterer(self) -> Component:
        return Component(self._clusterer)


@TASKS.register("jsonl_math")
class JsonlMathTask(_JsonlTask):
    """Math problems from local JSONL files, scored by final-answer equivalence (``math_answer``)."""

    name = "jsonl_math"
    instruction = MATH_INSTRUCTION

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None, clusterer: str = "embedding") -> None:
        super().__init__(train, test, keep_ids=keep_ids, chat=chat, instruction=instruction)
        self._clusterer = clusterer

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        answer = _first(obj, ("answer", "solution", "gold"))
        if answer is None:
            raise ValueError(f"{where}: no 'answer' (or 'solution') field")
        return {"answer": str(answer)}

    @property
    def reward(self) -> Component:
        return Component("math_answer")

    @property
    def clusterer(self) -> Component:
        return Component(self._clusterer)
