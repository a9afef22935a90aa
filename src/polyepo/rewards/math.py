"""Math answer checking: final-answer extraction, and equivalence through math-verify.

```python
from polyepo.rewards.math import extract_answer, answers_equivalent
extract_answer("... so the total is \\\\boxed{\\\\frac{3}{4}}.")   # '\\\\frac{3}{4}'
answers_equivalent("0.75", "\\\\frac{3}{4}")                       # True
```

math-verify (sympy underneath) guards each parse and comparison with a SIGALRM timeout,
which Python allows only in the main thread; called from another thread the checks run
without a timeout (logged once). math-verify parses LaTeX with its own grammar and plain
expressions with sympy's ``parse_expr`` on text it extracted with number/expression regexes;
answers are model text, so run this reward in the trainer process, not on untrusted input
from elsewhere.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from . import REWARDS
from .extract import completion_text

log = logging.getLogger("polyepo.rewards.math")

_ANSWER_IS = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|=)\s*[:\s]*(.+)", re.I)
_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|[-−]?\.\d+")
_thread_warned = False
#: What a failed math-verify comparison gives: None (not applicable), 0.0, or an error.
VERIFY_ERROR_POLICIES = ("none", "zero", "raise")


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start:i - 1].strip()
    return None


def _clean(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
        answer = answer.strip("$").strip()
    if answer.startswith("\\(") and answer.endswith("\\)"):
        answer = answer[2:-2].strip()
    return answer.rstrip(".").strip()


def extract_answer(text: Any) -> str | None:
    """The final answer of a solution text (or chat completion), or None.

    In order: the last ``\\boxed{...}``; else what follows the last "answer is" / "answer:"
    (to the end of its line, or sentence when it ends with a period); else the last number.
    """
    text = completion_text(text)
    boxed = _boxed(text)
    if boxed:
        return boxed
    found = list(_ANSWER_IS.finditer(text))
    if found:
        tail = found[-1].group(1).strip()
        tail = re.split(r"\.\s+(?=[A-Z])|\.$", tail, maxsplit=1)[0]
        if _clean(tail):
            return _clean(tail)
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace("−", "-").replace(" ", "") if numbers else None


def _timeout(timeout_s: int | None) -> int | None:
    global _thread_warned
    if timeout_s is None or threading.current_thread() is threading.main_thread():
        return timeout_s
    if not _thread_warned:
        _thread_warned = True
        log.warning("math-verify's timeout needs the main thread; checking without a timeout in this thread")
    return None


def parse_answer(answer: str, *, timeout_s: int | None = 5) -> list:
    """math-verify's parse of a bare answer: as LaTeX (inside ``$...$``) first, then as plain text."""
    from math_verify import parse

    t = _timeout(timeout_s)
    parsed = parse(f"${answer}$", parsing_timeout=t) if answer else []
    return parsed or (parse(answer, parsing_timeout=t) if answer else [])


def _normal(s: str) -> str:
    return re.sub(r"\s+|\\[,;!]|\\text\{([^}]*)\}|\$", lambda m: m.group(1) or "", s).lower()


def answers_equivalent(predicted: str, gold: str, *, timeout_s: int | None = 5) -> bool:
    """True when ``predicted`` is mathematically equal to ``gold`` (math-verify), or when neither
    parses and their normalised strings are equal. Raises math-verify's errors; its timeout as
    :class:`TimeoutError`."""
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:  # math-verify's TimeoutException is a BaseException: turn it into an ordinary error
        g, p = parse_answer(gold, timeout_s=timeout_s), parse_answer(predicted, timeout_s=timeout_s)
        if not g or not p:
            return bool(predicted.strip()) and _normal(predicted) == _normal(gold)
        return bool(verify(g, p, timeout_seconds=_timeout(timeout_s), raise_on_error=True))
    except TimeoutException as e:
        raise TimeoutError(f"math-verify timed out ({e})") from None


class MathAnswerReward:
    """Reward function (TRL contract): 1.0 if the final answer equals the row's gold answer, else 0.0.

    Reads the gold answer from column ``answer_column`` (default ``answer``); a gold value
    that is a full solution with a ``\\boxed{}`` is reduced to its boxed answer. Rows without
    a gold answer get None. An answer that cannot be found gets 0.0 (``no_answer``). A
    comparison that raises (math-verify error or timeout) is counted in ``verify_errors``,
    logged, and handled by ``on_verify_error``: ``none`` (default: None, not applicable, so
    the trainer's unscorable policy applies and the error is never a silent wrong answer),
    ``zero`` (0.0) or ``raise``. Building the reward without math-verify installed is an
    error naming the package. :attr:`last_stats` is refreshed on every call.
    """

    __name__ = "math_answer"

    def __init__(self, *, answer_column: str = "answer", timeout_s: int | None = 5,
                 on_verify_error: str = "none") -> None:
        if on_verify_error not in VERIFY_ERROR_POLICIES:
            raise ValueError(f"on_verify_error must be one of {', '.join(VERIFY_ERROR_POLICIES)}, "
                             f"got {on_verify_error!r}")
        if importlib.util.find_spec("math_verify") is None:
            from ..registry import MissingDependencyError

            raise MissingDependencyError("the math_answer reward needs the package math-verify, which is not "
                                         "installed: pip install math-verify (or polyepo[rewards])")
        self.answer_column, self.timeout_s, self.on_verify_error = answer_column, timeout_s, on_verify_error
        self.last_stats: dict[str, Any] = {}

    def __call__(self, prompts: Sequence, completions: Sequence, **columns: Any) -> list[float | None]:
        start = time.perf_counter()
        golds = columns.get(self.answer_column)
        golds = [None] * len(completions) if golds is None else list(golds)
        if len(golds) != len(completions):
            raise ValueError(f"column {self.answer_column!r} has {len(golds)} values for {len(completions)} completions")
        stats = dict.fromkeys(("rows", "not_applicable", "no_answer", "correct", "incorrect", "verify_errors"), 0)
        stats["rows"] = len(completions)
        out: list[float | None] = []
        for completion, gold in zip(completions, golds):
            out.append(self._score(completion, gold, stats))
        applicable = stats["rows"] - stats["not_applicable"]
        stats["accuracy"] = stats["correct"] / applicable if applicable else 0.0
        stats["seconds"] = time.perf_counter() - start
        self.last_stats = stats
        return out

    def _score(self, completion: Any, gold: Any, stats: dict) -> float | None:
        if gold is None or str(gold).strip() == "":
            stats["not_applicable"] += 1
            return None
        gold = str(gold)
        gold = _boxed(gold) or gold
        answer = extract_answer(completion)
        if answer is None:
            stats["no_answer"] += 1
            return 0.0
        try:
            ok = answers_equivalent(answer, gold, timeout_s=self.timeout_s)
        except Exception as e:  # math-verify failure or timeout: counted, logged, the policy applies
            stats["verify_errors"] += 1
            log.warning("math_answer: comparison of %.80r with %.80r failed (%s: %s); on_verify_error=%s",
                        answer, gold, type(e).__name__, e, self.on_verify_error)
            if self.on_verify_error == "raise":
                raise RuntimeError(f"math_answer: math-verify failed comparing {answer!r} with {gold!r}: {e}") from e
            return 0.0 if self.on_verify_error == "zero" else None
        stats["correct" if ok else "incorrect"] += 1
        return 1.0 if ok else 0.0


@REWARDS.register("math_answer")
def math_answer(**options: Any) -> MathAnswerReward:
    """Compare the final answer (\\boxed{}, "answer is", last number) with the gold one via math-verify."""
    return MathAnswerReward(**options)
