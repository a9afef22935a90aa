"""The rubric judge's two prompts, how they are filled in, and how their replies are read.

``prompts/build.md`` turns a problem and its reference solution into a rubric; the reply is
``{"outcome": [...], "process": [...]}``. ``prompts/score.md`` grades one response against a
rubric; the reply is ``{"O1": {"verdict": ..., "evidence": ...}, ...}`` with exactly the
rubric's item ids. A reply that breaks the format raises :class:`InvalidReply` with the reason,
which the judge client sends back (a re-ask) before the call counts as failed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...judge.replies import InvalidReply, parse_json_object
from .model import VERDICTS

PROMPT_DIR = Path(__file__).with_name("prompts")
#: prompt kind -> placeholders a template must contain
REQUIRED = {"build": ("{{PROBLEM}}", "{{REFERENCE}}"),
            "score": ("{{PROBLEM}}", "{{RUBRIC}}", "{{RESPONSE}}")}
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
MAX_ITEM_CHARS = 400
NOT_SHOWN = "(not shown to you)"


def load_template(kind: str, prompt: str | None = None) -> str:
    """The built-in ``build``/``score`` template, or the file ``prompt`` (checked for placeholders)."""
    if prompt is None or prompt == "default":
        return (PROMPT_DIR / f"{kind}.md").read_text(encoding="utf-8")
    path = Path(prompt).expanduser()
    if not path.is_file():
        raise ValueError(f"{kind}_prompt must be 'default' or a template file; {prompt!r} is neither")
    text = path.read_text(encoding="utf-8")
    missing = [p for p in REQUIRED[kind] if p not in text]
    if missing:
        raise ValueError(f"{kind} prompt template {path} lacks the placeholder(s) {', '.join(missing)}")
    return text


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{{NAME}}`` replaced by ``values[NAME]``, in one pass (text put in,
    such as a response that quotes ``{{RUBRIC}}``, is never expanded)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def keys_text(ids: list[str]) -> str:
    return ", ".join(f'"{i}"' for i in ids)


# -- replies ---------------------------------------------------------------------------------


def _texts(data: dict[str, Any], key: str, low: int, high: int) -> list[str]:
    value = data.get(key)
    if not isinstance(value, list):
        raise InvalidReply(f'"{key}" must be a list of strings')
    texts = []
    for k, item in enumerate(value):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise InvalidReply(f'item {k + 1} of "{key}" must be a non-empty string')
        if len(text) > MAX_ITEM_CHARS:
            raise InvalidReply(f'item {k + 1} of "{key}" is {len(text)} characters long; keep each item to one '
                               f"sentence under {MAX_ITEM_CHARS} characters")
        texts.append(" ".join(text.split()))
    if not low <= len(texts) <= high:
        raise InvalidReply(f'"{key}" must have {low} to {high} items, got {len(texts)}')
    return texts


def validate_build(text: str, max_items: int) -> tuple[list[str], list[str]]:
    """``(outcome texts, process texts)`` from a build reply, or :class:`InvalidReply`."""
    data = parse_json_object(text)
    extra = sorted(set(data) - {"outcome", "process"})
    if extra:
        raise InvalidReply(f'expected exactly the keys "outcome" and "process", got also {", ".join(extra)}')
    outcome = _texts(data, "outcome", 1, 2)
    process = _texts(data, "process", 1, max(1, max_items - len(outcome)))
    return outcome, process


def validate_score(text: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    """``{item id: (verdict, evidence)}`` from a score reply, or :class:`InvalidReply`.

    The reply must be a JSON object with exactly the rubric's ids as keys; each value an object
    with ``verdict`` in :data:`VERDICTS` (any case) and an optional string ``evidence`` (a bare
    verdict string is accepted too).
    """
    data = parse_json_object(text)
    missing = [k for k in ids if k not in data]
    extra = [k for k in data if k not in ids]
    if missing or extra:
        parts = [f"expected exactly the keys {keys_text(ids)}"]
        if missing:
            parts.append("missing " + keys_text(missing))
        if extra:
            parts.append("unexpected " + keys_text(extra[:10]))
        raise InvalidReply("; ".join(parts))
    out = {}
    for k in ids:
        value = data[k]
        verdict = value.get("verdict") if isinstance(value, dict) else value
        evidence = value.get("evidence", "") if isinstance(value, dict) else ""
        if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
            raise InvalidReply(f'the verdict of "{k}" must be one of "met", "partial", "missed", got {verdict!r}')
        if evidence is None:
            evidence = ""
        if not isinstance(evidence, str):
            raise InvalidReply(f'the evidence of "{k}" must be a string (a quote from the attempt)')
        out[k] = (verdict.strip().lower(), evidence)
    return out


# -- evidence ---------------------------------------------------------------------------------

_KEEP = re.compile(r"[^a-z0-9=+\-*/^<>()\[\]]")
_ELLIPSIS = re.compile(r"\.\.\.|…|\[\.\.\.\]")


def _squash(text: str) -> str:
    return _KEEP.sub("", text.lower())


def evidence_found(evidence: str, response: str) -> bool:
    """True when the quote ``evidence`` occurs in ``response``.

    Both sides are compared with case, spaces, punctuation, quotes and LaTeX backslashes/braces
    removed (letters, digits and ``= + - * / ^ < > ( ) [ ]`` are kept), so a quote that differs
    in line breaks or ``$`` signs still matches; an ellipsis splits the quote into parts that
    must all occur, in order. A quote with nothing left after squashing is not found.
    """
    squashed = _squash(response)
    parts = [_squash(p) for p in _ELLIPSIS.split(evidence)]
    parts = [p for p in parts if p]
    if not parts:
        return False
    pos = 0
    for part in parts:
        at = squashed.find(part, pos)
        if at < 0:
            return False
        pos = at + len(part)
    return True
