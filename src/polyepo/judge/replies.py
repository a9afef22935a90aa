"""Reading a judge's reply: lenient JSON extraction, a validation error, the re-ask message."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class InvalidReply(ValueError):
    """A reply that does not follow the requested format; ``reason`` is sent back on re-ask."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json_object(text: str | None) -> dict[str, Any]:
    """The JSON object in ``text``, repairing the usual wrappers.

    Accepts a bare object, one inside a Markdown code fence, or one surrounded by prose (the
    span from the first ``{`` to the last ``}``). Raises :class:`InvalidReply` otherwise.
    """
    if text is None or not text.strip():
        raise InvalidReply("the reply was empty")
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    if "{" not in text and "[" not in text:
        raise InvalidReply("no JSON object found in the reply")
    error = "no JSON object found in the reply"
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as e:
            error = f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
            continue
        if isinstance(value, dict):
            return value
        error = f"expected a JSON object, got a JSON {type(value).__name__}"
    raise InvalidReply(error)


def reask_message(reason: str) -> str:
    """The user turn that sends an invalid reply back to the judge."""
    return (
        f"Your reply could not be used: {reason}. Answer again with only the JSON object in "
        "the exact format requested above, with no text before or after it."
    )
