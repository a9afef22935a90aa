"""The echo check: does a response copy the rubric's wording instead of doing the work?

A policy trained on a rubric reward can learn which words the judge credits ("applies the
pigeonhole principle", "checks the empty list") and write them without the steps behind them.
The policy never sees the rubric, so long runs of the rubric's own wording in a response are a
sign of that drift. Word n-grams (lower case, ``\\w+`` tokens; n-grams never cross from one
item to the next) give two numbers:

    coverage = |R & S| / |R|     how much of the rubric's wording the response contains
    density  = |R & S| / |S|     how much of the response is rubric wording

with R the rubric's n-grams and S the response's. A response is flagged when
``coverage >= threshold`` *and* it misses the substance: ``density >= density_threshold`` (it
is mostly rubric words, little work of its own), or a verifiable reward exists and says it is
wrong (below 0.5). A genuine solution that shares a formula or a phrase with the rubric has a
low coverage, and a long genuine solution a low density.

What it does not catch: paraphrased rubric words, and a response that pads copied rubric text
with enough unrelated text to lower its density when no verifiable reward is configured (the
judge prompt's "restating the rubric earns missed" rule is the other line of defence).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``text`` (all words when it has fewer than n)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class EchoResult:
    """``coverage`` and ``density`` in [0, 1] (see the module docstring) and the verdict."""

    coverage: float
    density: float
    flagged: bool


def echo_check(response: str, rubric_texts: Iterable[str], *, n: int = 3, threshold: float = 0.5,
               density_threshold: float = 0.5, verifiable: float | None = None) -> EchoResult:
    """Measure how much of the rubric ``response`` echoes, and flag it (module docstring)."""
    rubric: set[tuple[str, ...]] = set()
    for text in rubric_texts:
        rubric |= ngrams(text, n)
    mine = ngrams(response, n)
    if not rubric or not mine:
        return EchoResult(0.0, 0.0, False)
    shared = len(rubric & mine)
    coverage, density = shared / len(rubric), shared / len(mine)
    wrong = verifiable is not None and verifiable < 0.5
    return EchoResult(coverage, density, coverage >= threshold and (density >= density_threshold or wrong))
