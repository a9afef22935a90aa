"""Pull the candidate program out of a model's answer.

Models answer in several shapes: a fenced Markdown block (often after some prose), a bare
function, or (base models on HumanEval-style prompts) the *continuation* of a code prompt.
:func:`extract_program` handles all three; every mode returns source that parses, or None.
"""

from __future__ import annotations

import ast
import re
from typing import Any

EXTRACT_MODES = ("auto", "fenced", "function", "completion", "raw")

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.S | re.M)
_PY_TAGS = {"", "python", "py", "python3", "py3", "python2"}


def completion_text(completion: Any) -> str:
    """The text of one completion: a string, or TRL's conversational list of messages.

    For a list of messages the contents of the assistant messages are joined (a single
    message dict is accepted too); content given as a list of parts keeps the text parts.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        parts = []
        for msg in completion:
            if isinstance(msg, dict) and msg.get("role", "assistant") == "assistant":
                content = msg.get("content", "")
                if isinstance(content, list):
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                parts.append(str(content))
        return "\n".join(parts)
    raise TypeError(f"a completion must be a str or a list of messages, got {type(completion).__name__}")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def entry_name(entry_point: str | None) -> str | None:
    """The top-level name an entry point refers to: ``"Solution().twoSum"`` -> ``"Solution"``."""
    if not entry_point:
        return None
    m = re.match(r"\s*([A-Za-z_]\w*)", entry_point)
    return m.group(1) if m else None


def _defines(code: str, name: str | None) -> bool:
    if name is None:
        return True
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name
               for node in tree.body)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language tag, code)`` of every fenced block, in order; an unclosed last fence runs to the end."""
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _from_fences(text: str, name: str | None) -> str | None:
    blocks = [(tag, code) for tag, code in fenced_blocks(text) if tag in _PY_TAGS and _parses(code)]
    for _, code in reversed(blocks):
        if _defines(code, name):
            return code
    return blocks[-1][1] if blocks and name is None else None


def last_function(text: str, name: str | None) -> str | None:
    """The last complete top-level ``def name`` / ``class name`` in ``text``, with its body.

    Imports written at the start of a line anywhere before it are kept in front of it.
    """
    if name is None:
        return None
    lines = text.split("\n")
    header = re.compile(rf"^(async\s+def|def|class)\s+{re.escape(name)}\b")
    for start in reversed([i for i, line in enumerate(lines) if header.match(line)]):
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t" or lines[end].startswith(")")):
            end += 1
        while start > 0 and lines[start - 1].startswith("@"):
            start -= 1
        body = "\n".join(lines[start:end]).rstrip() + "\n"
        imports = [line for line in lines[:start] if re.match(r"^(import|from)\s+[\w.]+", line) and _parses(line)]
        code = "\n".join(imports + [body])
        if _parses(code) and _defines(code, name):
            return code
    return None


def _continuation(code_prompt: str, completion: str) -> str | None:
    program = code_prompt + completion
    if _parses(program):
        return program
    lines = completion.split("\n")  # cut where the model left the function body
    for i, line in enumerate(lines[1:], start=1):
        if line and line[0] not in " \t#)":
            program = code_prompt + "\n".join(lines[:i]) + "\n"
            return program if _parses(program) else None
    return None


def extract_program(completion: Any, *, entry_point: str | None = None, code_prompt: str | None = None,
                    mode: str = "auto") -> str | None:
    """The program to run for ``completion``, or None when no parseable code is found.

    Modes: ``fenced`` (the last Python code block, preferring one that defines the entry
    point), ``function`` (the last complete ``def``/``class`` with the entry point's name),
    ``completion`` (``code_prompt + completion``, cut where the model left the function
    body: HumanEval-style continuation), ``raw`` (the text as is), ``auto`` (fenced if the
    answer has code fences, else the continuation when it parses and defines the entry point,
    else the last function, else the raw text if it parses). In every mode but ``completion``
    and ``raw`` the code prompt, when given, is kept in front of the extracted code, so that
    its imports and helper functions stay defined (a later definition replaces its stub).
    """
    if mode not in EXTRACT_MODES:
        raise ValueError(f"extract mode must be one of {', '.join(EXTRACT_MODES)}; got {mode!r}")
    text = completion_text(completion)
    name = entry_name(entry_point)
    prefix = (code_prompt.rstrip() + "\n\n\n") if code_prompt else ""
    if mode == "raw":
        return text if _parses(text) else None
    if mode == "completion":
        return _continuation(code_prompt or "", text)
    found = None
    if mode in ("auto", "fenced"):
        found = _from_fences(text, name)
        if found is not None or mode == "fenced" or "```" in text:
            return None if found is None else _join(prefix, found)
    if code_prompt and mode == "auto":
        program = _continuation(code_prompt, text)
        if program is not None and text.strip() and _defines(program, name):
            body_only = not re.search(rf"^(def|class)\s+{re.escape(name or '')}\b", text, re.M) if name else True
            if body_only:
                return program
    found = last_function(text, name)
    if found is not None:
        return _join(prefix, found)
    if mode == "auto" and _parses(text) and text.strip() and _defines(text, name):
        return _join(prefix, text)
    return None


def _join(prefix: str, code: str) -> str | None:
    program = prefix + code
    return program if _parses(program) else (code if _parses(code) else None)
