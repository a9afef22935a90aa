"""Reading a judge's reply: JSON extraction, a validation error, bounded excerpts, the re-ask.

:func:`parse_json_object` never raises anything but :class:`InvalidReply`, whatever the text
(deep nesting, numbers with thousands of digits, stray braces, megabytes): a reply it cannot
read is an invalid reply, which the client sends back to the judge and then hands to the
feature's failure policy.
"""

from __future__ import annotations

import json
import re
import reprlib
from typing import Any


class InvalidReply(ValueError):
    """A reply that does not follow the requested format; ``reason`` is sent back on re-ask."""

    def __init__(self, reason: str) -> None:
        reason = excerpt(str(reason), 600)
        super().__init__(reason)
        self.reason = reason


def excerpt(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters (its head and tail, the cut marked), with
    lone surrogates replaced so that the result can always be encoded as UTF-8."""
    text = text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text
    if limit <= 0 or len(text) <= limit:
        return text
    head = max(1, limit * 2 // 3)
    tail = max(1, limit - head)
    return f"{text[:head]}\n[... {len(text) - head - tail} characters omitted ...]\n{text[-tail:]}"


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 60, 60, 40
_SHORT.maxdict = _SHORT.maxlist = 4


def short_repr(value: Any) -> str:
    """A bounded ``repr`` of any parsed JSON value, for error messages (never raises)."""
    try:
        return excerpt(_SHORT.repr(value), 120)
    except Exception:  # a value whose repr fails is still described
        return f"<{type(value).__name__}>"


# the characters that open, close or escape anything the scanner tracks
_SPECIAL = re.compile(r'[{}"\\]')
# an object that starts like JSON: a key, or an empty object (prose braces such as {x} do not)
_JSON_LIKE = re.compile(r"\{\s*[\"'}]")
# the same for an opening brace never closed: also one at the very end (a reply cut off there)
_OPEN_JSON_LIKE = re.compile(r"\{\s*(?:[\"'}]|\Z)")


def _scan(text: str) -> tuple[list[tuple[int, int]], list[int]]:
    """Balanced brace spans and unmatched opening braces of ``text``, in one linear pass.

    Double-quoted strings inside braces are skipped (with backslash escapes), so braces inside
    a JSON string do not count. Returns ``(maximal spans as (start, end), unmatched opens)``.
    """
    stack: list[int] = []
    pairs: list[tuple[int, int]] = []
    in_string = False
    skip_to = -1
    for m in _SPECIAL.finditer(text):
        i = m.start()
        if i < skip_to:
            continue
        ch = text[i]
        if in_string:
            if ch == "\\":
                skip_to = i + 2
            elif ch == '"':
                in_string = False
        elif ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                pairs.append((stack.pop(), i + 1))
        elif ch == '"' and stack:
            in_string = True
    pairs.sort()
    maximal: list[tuple[int, int]] = []
    for start, end in pairs:
        if not maximal or start >= maximal[-1][1]:
            maximal.append((start, end))
    return maximal, stack


def _loads(text: str) -> Any:
    """``json.loads`` whose every failure is an :class:`InvalidReply` with a reason."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidReply(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise InvalidReply("not valid JSON: nested too deeply to read") from None
    except ValueError as e:  # an integer with more digits than Python converts (4300 by default)
        why = "a number has too many digits to read" if "digits" in str(e) else excerpt(str(e), 120)
        raise InvalidReply(f"not valid JSON: {why}") from None


def parse_json_object(text: str | None) -> dict[str, Any]:
    """The JSON object in ``text``, repairing the usual wrappers.

    Accepts a bare object, one inside a Markdown code fence, or one surrounded by prose. When
    the reply holds several objects (a draft, then the answer), the **last** one is the answer;
    when the reply holds an object that is never closed (a reply cut off mid-answer), or its last
    object is not valid JSON, the reply is invalid: an earlier draft is never taken instead.
    Raises :class:`InvalidReply`, and nothing else, for any text.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidReply("the reply was empty")
    spans, unmatched = _scan(text)
    open_json = [i for i in unmatched if _OPEN_JSON_LIKE.match(text, i)]
    if open_json:
        raise InvalidReply(f"not valid JSON: the JSON object that starts at character {open_json[-1]} is never "
                           "closed (was the reply cut off?)")
    candidates = [(s, e) for s, e in spans if _JSON_LIKE.match(text, s)]
    if not candidates:
        return _not_an_object(text)
    start, end = candidates[-1]
    value = _loads(text[start:end])
    if not isinstance(value, dict):  # pragma: no cover - a balanced "{...}" that parses is an object
        raise InvalidReply(f"expected a JSON object, got a JSON {type(value).__name__}")
    return value


def _not_an_object(text: str) -> dict[str, Any]:
    """The error for a reply without a JSON-looking object (always raises)."""
    body = text.strip()
    fence = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    if body[:1] in "[\"" or body[:1].isdigit() or body in ("true", "false", "null"):
        try:
            value = _loads(body)
        except InvalidReply:
            value = None
        if value is not None or body == "null":
            name = {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
            raise InvalidReply(f"expected a JSON object, got a JSON {name}")
    raise InvalidReply("no JSON object found in the reply")


def reask_message(reason: str) -> str:
    """The user turn that sends an invalid reply back to the judge."""
    return (
        f"Your reply could not be used: {reason}. Answer again with only the JSON object in "
        "the exact format requested above, with no text before or after it."
    )
