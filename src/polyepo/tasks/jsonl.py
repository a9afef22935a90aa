"""Problem sets that users bring as local files: code (leetcode2k-, LiveCodeBench-style) and math.

Nothing is downloaded: point the task at local files, one per split, in any format of
:mod:`polyepo.tasks.files` (JSONL, JSON, CSV, Parquet, Arrow, a ``datasets`` folder); the task
names keep their historical ``jsonl_`` prefix. ``columns`` maps the fields below to the names
your file uses (``columns={"prompt": "question_text", "answer": "final"}``). Bad files fail
with the file, the line or row, and the missing field. docs/data.md has worked examples.

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

import difflib
import json
from pathlib import Path
from typing import Any

from . import TASKS
from .base import Component
from .files import read_rows

STATEMENT_FIELDS = ("prompt", "question", "problem", "content")
ID_FIELDS = ("problem_id", "task_id", "id", "question_id")
CODE_INSTRUCTION = "{statement}\n\nWrite a Python solution. Reply with the complete code in a single ```python code block."
MATH_INSTRUCTION = "{statement}\n\nThink step by step, then put the final answer inside \\boxed{{}}."


def _first(obj: dict[str, Any], fields: tuple[str, ...]) -> Any:
    return next((obj[f] for f in fields if obj.get(f) not in (None, "")), None)


class _JsonlTask:
    name = "jsonl"
    instruction = "{statement}"
    fields: tuple[str, ...] = ("prompt", "problem_id")
    """The field names ``columns`` may map (the statement, the id, and the reward's columns)."""
    default_reward = ""
    default_clusterer = ""

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None, columns: dict[str, str] | None = None,
                 clusterer: str | None = None) -> None:
        self.paths = {k: str(v) for k, v in (("train", train), ("test", test)) if v}
        if not self.paths:
            raise ValueError(f"{self.name} needs at least one of train=PATH, test=PATH (data files or datasets folders)")
        self.keep = None
        if keep_ids:
            self.keep = {line.strip() for line in Path(keep_ids).expanduser().read_text().splitlines() if line.strip()}
        self.chat = chat
        self.instruction = instruction or self.instruction
        self.columns = dict(columns or {})
        for key, value in self.columns.items():
            if key not in self.fields:
                close = difflib.get_close_matches(key, self.fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"columns: unknown field {key!r}{hint}; {self.name} fields: {', '.join(self.fields)}")
            if not isinstance(value, str):
                raise ValueError(f"columns: {key!r} must name a column of your file, got {value!r}")
        self._clusterer = clusterer or self.default_clusterer

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.paths)

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        if split not in self.paths:
            raise ValueError(f"unknown split {split!r} for {self.name}; valid splits: {', '.join(self.paths)}")
        out = []
        for i, (where, obj) in enumerate(read_rows(self.paths[split], split), 1):
            obj = self._mapped(obj, where)
            statement = _first(obj, STATEMENT_FIELDS)
            if statement is None:
                raise ValueError(f"{where}: no problem statement (one of {', '.join(STATEMENT_FIELDS)}, "
                                 f"or map yours with columns={{'prompt': NAME}}); fields here: {', '.join(obj)}")
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

    def _mapped(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        if not self.columns:
            return obj
        missing = [v for v in self.columns.values() if v not in obj]
        if missing:
            raise ValueError(f"{where}: no column {missing[0]!r} (named in columns); fields here: {', '.join(obj)}")
        return {**obj, **{key: obj[value] for key, value in self.columns.items()}}

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def clusterer(self) -> Component:
        return Component(self._clusterer)


@TASKS.register("jsonl_code")
class JsonlCodeTask(_JsonlTask):
    """Code problems from local files (JSONL, JSON, CSV, Parquet, datasets), scored by sandboxed tests.

    Args:
        train, test: paths of the splits: data files or ``datasets`` folders (``PATH#SPLIT``).
        keep_ids: a file of problem ids to keep (one per line).
        chat: prompts as one user message (for chat models) or as plain text.
        instruction: the prompt template (``{statement}`` is replaced).
        columns: ``{field: your column}`` for the fields ``prompt``, ``problem_id``, ``test``,
            ``entry_point``, ``code_prompt``, ``test_cases``, ``input_output``.
        timeout_s, memory_mb, strict_returns: the sandbox limits and options of ``code_tests``.
        clusterer: the strategy clusterer (default ``python_ast``; ``judge`` as seed 002).
    """

    name = "jsonl_code"
    instruction = CODE_INSTRUCTION
    fields = ("prompt", "problem_id", "test", "entry_point", "code_prompt", "test_cases", "input_output")
    default_reward = "code_tests"
    default_clusterer = "python_ast"

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None, columns: dict[str, str] | None = None,
                 timeout_s: float = 6.0, memory_mb: int = 1024, strict_returns: bool = True,
                 clusterer: str = "python_ast") -> None:
        super().__init__(train, test, keep_ids=keep_ids, chat=chat, instruction=instruction, columns=columns,
                         clusterer=clusterer)
        self.reward_options = {"timeout_s": timeout_s, "memory_mb": memory_mb, "strict_returns": strict_returns}

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        if obj.get("test"):
            return {"test": obj["test"], "entry_point": obj.get("entry_point"), "code_prompt": obj.get("code_prompt")}
        if obj.get("test_cases"):
            return {"test_cases": _cases(obj["test_cases"], where)}
        io = obj.get("input_output")
        if io:
            io = _json_value(io, where, "input_output")
            if not isinstance(io, dict):
                raise ValueError(f"{where}: input_output must be {{\"inputs\": [...], \"outputs\": [...]}}")
            cases = [{"input": a, "output": b} for a, b in zip(io.get("inputs", []), io.get("outputs", []))]
            if cases:
                return {"test_cases": json.dumps(cases)}
        raise ValueError(f"{where}: no tests: give 'test' (+ 'entry_point'), 'test_cases' or 'input_output'")

    @property
    def reward(self) -> Component:
        return Component(self.default_reward, dict(self.reward_options))


def _json_value(value: Any, where: str, field: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: {field} is a string but not JSON ({e.msg})") from None


def _cases(value: Any, where: str) -> str:
    cases = _json_value(value, where, "test_cases")
    if not (isinstance(cases, list) or (isinstance(cases, dict) and "inputs" in cases)):
        raise ValueError(f"{where}: test_cases must be a list of {{\"input\": ..., \"output\": ...}}, "
                         f"got {type(cases).__name__}")
    return json.dumps(cases)


@TASKS.register("jsonl_math")
class JsonlMathTask(_JsonlTask):
    """Math problems from local files (JSONL, JSON, CSV, Parquet, datasets), scored by final-answer equivalence.

    Args: as ``jsonl_code`` (``columns`` maps ``prompt``, ``problem_id``, ``answer``); the
    reward is ``math_answer``; clusterer default ``embedding``.
    """

    name = "jsonl_math"
    instruction = MATH_INSTRUCTION
    fields = ("prompt", "problem_id", "answer")
    default_reward = "math_answer"
    default_clusterer = "embedding"

    def __init__(self, train: str | None = None, test: str | None = None, *, keep_ids: str | None = None,
                 chat: bool = True, instruction: str | None = None, columns: dict[str, str] | None = None,
                 clusterer: str = "embedding") -> None:
        super().__init__(train, test, keep_ids=keep_ids, chat=chat, instruction=instruction, columns=columns,
                         clusterer=clusterer)

    def _columns(self, obj: dict[str, Any], where: str) -> dict[str, Any]:
        answer = _first(obj, ("answer", "solution", "gold"))
        if answer is None:
            raise ValueError(f"{where}: no 'answer' (or 'solution') field (or map yours with columns={{'answer': NAME}})")
        return {"answer": str(answer)}

    @property
    def reward(self) -> Component:
        return Component(self.default_reward)
