"""``exact`` and ``answer``: two offline backends that need nothing but the text.

``exact`` groups responses whose normalised text is equal (whitespace collapsed, optionally
case-folded and with code canonicalised): a floor for diversity, useful as a sanity check.

``answer`` groups responses by a key: the final answer of a math solution (built in), or any
function ``key(response, **context) -> hashable | None`` (None = degenerate). A task that
knows the strategy of each answer exactly (the toy task) passes its own key.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Hashable, Sequence
from fractions import Fraction
from typing import Any

from .base import CLUSTERERS, BaseClusterer, ClusterResult
from .code import CANONICAL_MODES, canonicalize_response
from .degenerate import DEFAULT_CHECK, DegenerateCheck

KeyFunction = Callable[..., Hashable | None]

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def normalize_answer(answer: str) -> str:
    """Canonical text of a final answer: LaTeX wrappers, ``x =``, spaces and a trailing period
    removed; exact rationals written as a reduced fraction (``0.125``, ``1/8``, ``\\frac{1}{8}``
    all give ``1/8``)."""
    a = answer.strip().strip("$").strip()
    a = re.sub(r"\\(?:left|right|!|,|;|\s)", "", a)
    a = re.sub(r"\\text\{([^}]*)\}", r"\1", a)
    a = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", a)
    a = re.sub(r"^[A-Za-z]\s*=\s*", "", a)
    a = a.rstrip(".").replace(" ", "")
    plain = re.sub(r"^\((-?[\d.]+)\)/\(([\d.]+)\)$", r"\1/\2", a).replace(",", "")
    try:
        value = Fraction(plain)
    except (ValueError, ZeroDivisionError):
        return a
    return str(value)


def math_answer(response: str, **context: Any) -> str | None:
    """Built-in key ``math``: the normalised final answer (last ``\\boxed{}``, else the last
    "answer is/answer:" line, else the last number); None if there is none."""
    found = last_boxed(response)
    if found is None:
        matches = _ANSWER_IS.findall(response)
        if matches:
            found = matches[-1].strip()
            found = found.split("\n")[0]
    if found is None:
        numbers = _NUMBER.findall(response)
        found = numbers[-1] if numbers else None
    if found is None or not found.strip():
        return None
    return normalize_answer(found) or None


def last_line(response: str, **context: Any) -> str | None:
    """Built-in key ``last_line``: the last non-blank line, whitespace-collapsed."""
    lines = [" ".join(line.split()) for line in response.splitlines() if line.strip()]
    return lines[-1] if lines else None


#: Built-in keys of the ``answer`` backend, by name.
ANSWER_KEYS: dict[str, KeyFunction] = {"math": math_answer, "last_line": last_line}


def resolve_key(key: str | KeyFunction) -> KeyFunction:
    """A key function from a callable, a built-in name, or ``"package.module:function"``."""
    if callable(key):
        return key
    if isinstance(key, str) and key in ANSWER_KEYS:
        return ANSWER_KEYS[key]
    if isinstance(key, str) and ":" in key:
        module, _, attr = key.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"key {key!r} could not be imported: {e}") from None
        if callable(fn):
            return fn
    raise ValueError(f"key must be a callable, one of {', '.join(ANSWER_KEYS)}, or 'module:function'; got {key!r}")


def stable_id(key: Hashable, degenerate: int = 100) -> int:
    """An id for ``key`` that is the same in every group, step and process: a 56-bit blake2b
    hash of ``repr(key)`` plus 1 (never 0; the degenerate id is skipped)."""
    h = int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=7).digest(), "big") + 1
    return h + 1 if h == degenerate else h


@CLUSTERERS.register("answer")
class AnswerClusterer(BaseClusterer):
    """Same cluster iff same key; a None key is degenerate.

    Args:
        key: ``key(response, **context) -> hashable | None``, a built-in name (``math``,
            ``last_line``) or ``"module:function"``. ``context`` holds the group's columns.
        degenerate: id of degenerate responses.
        check: an extra text-level degenerate check run before the key (None = key only).
        stable_ids: ids that name the key itself (:func:`stable_id`), the same for the same
            answer in every group and step, instead of 1, 2, ... by first appearance: what the
            historical ``outcome_explore`` estimator needs to count answers across steps.
    """

    name = "answer"

    def __init__(self, *, key: str | KeyFunction = "math", degenerate: int = 100,
                 check: DegenerateCheck | None = None, stable_ids: bool = False) -> None:
        super().__init__(degenerate=degenerate)
        self.key = resolve_key(key)
        self.check = check
        self.stable_ids = bool(stable_ids)

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        keys = []
        for i, r in enumerate(responses):
            k = None if self.check is not None and self.check(r) else self.key(r, **context)
            try:
                hash(k)
            except TypeError:
                raise ValueError(f"key function returned an unhashable {type(k).__name__} for response {i}") from None
            keys.append(k)
        if self.stable_ids:
            ids = [self.degenerate if k is None else stable_id(k, self.degenerate) for k in keys]
            return ClusterResult(ids=ids, backend=self.name, degenerate=self.degenerate)
        return self.result(keys)


@CLUSTERERS.register("exact")
class ExactClusterer(BaseClusterer):
    """Same cluster iff the normalised texts are equal.

    Args:
        casefold: ignore letter case.
        canonicalize: ``none`` | ``strip_comments`` | ``normalize_names``: canonicalise Python
            code blocks first (so comments or variable names do not separate two responses).
        degenerate: id of degenerate responses.
        check: the text-level degenerate check.
    """

    name = "exact"

    def __init__(self, *, casefold: bool = False, canonicalize: str = "none", degenerate: int = 100,
                 check: DegenerateCheck = DEFAULT_CHECK) -> None:
        super().__init__(degenerate=degenerate)
        if canonicalize not in CANONICAL_MODES:
            raise ValueError(f"canonicalize must be one of {', '.join(CANONICAL_MODES)}, got {canonicalize!r}")
        self.casefold, self.canonicalize, self.check = casefold, canonicalize, check

    def normalize(self, response: str) -> str:
        text = " ".join(canonicalize_response(response, self.canonicalize).split())
        return text.casefold() if self.casefold else text

    def cluster(self, prompt: str, responses: Sequence[str], **context: Any) -> ClusterResult:
        return self.result([None if self.check(r) else self.normalize(r) for r in responses])
