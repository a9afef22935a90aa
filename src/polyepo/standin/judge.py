"""A stand-in judge: answers polyepo's own judge requests offline, so that a judge
configuration can be tried end to end without a model server (``polyepo judge-standin``).

It reads the first user message of a chat-completions request, recognises which of polyepo's
prompts filled it (the clustering judge's ``code`` and ``math`` prompts, the rubric judge's
``build`` and ``score`` prompts, and any template files it is given), recovers what was filled
in (problem, responses, reference, rubric, attempt) and replies in the format that prompt asks
for. Its answers follow simple, documented rules, not a model's judgement:

- **clustering**: the numbered responses are clustered by an offline clusterer: by default
  ``python_ast`` for the ``code`` prompt (and template files) and ``answer`` (``key=math``, the
  final answer) for the ``math`` prompt; any registered one when named (``embedding``,
  ``exact`` ...). Its degenerate responses get the prompt's degenerate id.
- **rubric build**: the outcome item is "The final answer is X." with X the reference's last
  ``\\boxed{}`` (else its last line); the process items are the reference's other lines (or
  sentences), at most as many as the prompt allows, evenly chosen.
- **rubric score**: an item is ``met`` when the attempt contains every number of the item and at
  least 3/4 of its content words, ``partial`` when it contains half of its numbers and words
  together, else ``missed`` (content words: 3+ letters, outside a short list of common and rubric
  words; case and punctuation ignored). The evidence is the attempt's line sharing most terms
  with the item (its first 25 words).

A request it does not recognise gets HTTP 400 saying so. See docs/clustering.md and
docs/rubric.md for how to point a configuration at it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import Reply, Status

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")
_NUMBERS = ("N", "DEGENERATE", "MAX_ITEMS", "MAX_PROCESS")
_WORD = re.compile(r"[a-z]{3,}|\d+(?:\.\d+)?")
STOP = frozenset("""the and for with that this from are was were has have had its into than then them they
there their which while when what where who will would can could should shall may might must not nor but
all any each every some such only also very more most less few own same both other use uses used using
answer answers final result results correct correctly step steps reach reaches reached gives given get
gets show shows shown find finds found make makes made value values attempt response solution reference
problem item items way one two number numbers""".split())


class PromptPattern:
    """A prompt template turned into a regular expression that recovers its placeholders.

    The template's text must match literally; each ``{{NAME}}`` becomes a group (a repeated one
    must repeat the same text). ``parse(message)`` returns ``{NAME: text}`` or None.
    """

    def __init__(self, kind: str, template: str, name: str) -> None:
        self.kind, self.name = kind, name
        parts, seen, pos = [], set(), 0
        for m in _PLACEHOLDER.finditer(template):
            parts.append(re.escape(template[pos:m.start()]))
            key = m.group(1)
            if key in seen:
                parts.append(f"(?P={key})")
            else:
                seen.add(key)
                parts.append(f"(?P<{key}>{self._group(key, seen)})")
            pos = m.end()
        parts.append(re.escape(template[pos:]))
        self.regex = re.compile("".join(parts), re.S)

    @staticmethod
    def _group(key: str, seen: set[str]) -> str:
        if key in _NUMBERS:
            return r"\d+"
        if key == "RESPONSES":  # anchored, so that a problem with blank lines is not cut short
            last = "(?P=N)" if "N" in seen else r"\d+"
            return rf"<response 1>\n.*?\n</response {last}>"
        return ".*?"

    def parse(self, message: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(message)
        return m.groupdict() if m else None


def split_responses(block: str, n: int) -> list[str]:
    """The texts of ``<response 1>\\n...\\n</response 1>\\n<response 2>...`` (n of them)."""
    out, pos = [], 0
    for i in range(1, n + 1):
        head, close = f"<response {i}>\n", f"\n</response {i}>"
        if not block.startswith(head, pos):
            raise ValueError(f"response {i} of {n} not found where expected")
        start = pos + len(head)
        if i < n:
            end = block.find(f"{close}\n<response {i + 1}>\n", start)
        else:
            end = len(block) - len(close) if block.endswith(close) else -1
        if end < start:
            raise ValueError(f"the end of response {i} of {n} not found")
        out.append(block[start:end])
        pos = end + len(close) + 1
    return out


def terms(text: str) -> list[str]:
    """Numbers and content words of ``text`` (lower case, LaTeX commands dropped), in order."""
    text = re.sub(r"\\[a-zA-Z]+", " ", text.lower())
    return [t for t in _WORD.findall(text) if t not in STOP]


@dataclass
class Verdict:
    verdict: str
    evidence: str


def judge_item(item: str, attempt: str) -> Verdict:
    """The stand-in's verdict on one rubric item (see the module docstring)."""
    wanted = set(terms(item))
    have = set(terms(attempt))
    if not wanted:
        return Verdict("missed", "")
    numbers = {t for t in wanted if t[0].isdigit()}
    share = len(wanted & have) / len(wanted)
    if numbers <= have and share >= 0.75:
        verdict = "met"
    elif share >= 0.5:
        verdict = "partial"
    else:
        return Verdict("missed", "")
    lines = [line for line in re.split(r"\n|(?<=[.!?])\s+", attempt) if line.strip()]
    best = max(lines, key=lambda line: len(wanted & set(terms(line))))
    return Verdict(verdict, " ".join(best.split()[:25]))


def build_rubric(reference: str, max_process: int) -> dict[str, list[str]]:
    """The stand-in's rubric of a reference solution (see the module docstring)."""
    from ..clustering.offline import last_boxed

    lines = [" ".join(line.split()) for line in reference.strip().splitlines() if line.strip()]
    if len(lines) < 2:
        lines = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(lines)) if s]
    if not lines:
        raise ValueError("the reference solution is empty")
    boxed = last_boxed(reference)
    if boxed:
        outcome = f"The final answer is {boxed}."
    else:
        outcome, lines = f"Reaches the reference's final step: {lines[-1]}", lines[:-1]
    steps = lines or [" ".join(reference.split())]
    k = max(1, min(max_process, len(steps)))
    chosen = [steps[round(j * (len(steps) - 1) / max(k - 1, 1))] for j in range(k)] if k > 1 else steps[:1]
    return {"outcome": [outcome[:380]], "process": [s[:380] for s in dict.fromkeys(chosen)]}


#: the clusterer answering each built-in clustering prompt when none is named
DEFAULT_CLUSTERERS: dict[str, tuple[str, dict[str, Any]]] = {"code": ("python_ast", {}), "math": ("answer", {"key": "math"})}
DEFAULT = ("python_ast", {})


class StandInJudge:
    """Callable ``request body -> Reply | Status`` for :class:`~polyepo.standin.ChatServer`.

    Args:
        clusterer: the offline clusterer that answers every clustering request; default: per
            prompt (:data:`DEFAULT_CLUSTERERS`, ``python_ast`` for template files).
        clusterer_options: its options.
        prompts: extra template files as ``{kind: [paths]}``, kind ``cluster``, ``build`` or
            ``score`` (the built-in prompts are always recognised).
    """

    def __init__(self, clusterer: str | None = None, clusterer_options: dict[str, Any] | None = None,
                 prompts: dict[str, Sequence[str | Path]] | None = None) -> None:
        from ..clustering import make_clusterer

        if clusterer == "judge":
            raise ValueError("the stand-in judge clusters with an offline backend; 'judge' would ask a judge")
        if clusterer is None and clusterer_options:
            raise ValueError("clusterer options need a clusterer name")
        chosen = {name: (clusterer, clusterer_options or {}) if clusterer else DEFAULT_CLUSTERERS.get(name, DEFAULT)
                  for name in ("code", "math", "file")}
        self.clusterers = {name: (backend, make_clusterer(backend, **options))
                           for name, (backend, options) in chosen.items()}
        self.patterns = _builtin_patterns()
        for kind, paths in (prompts or {}).items():
            if kind not in ("cluster", "build", "score"):
                raise ValueError(f"prompt kind must be cluster, build or score, got {kind!r}")
            for path in paths:
                self.patterns.insert(0, PromptPattern(kind, Path(path).expanduser().read_text(encoding="utf-8"),
                                                      f"{kind} {path}"))
        self.counts: Counter[str] = Counter()
        self.log: Callable[[str], None] | None = None
        """Called with one line per request answered (what it was, what the answer was)."""
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply | Status:
        message = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "user"), None)
        if not isinstance(message, str):
            return self._count("unrecognised", Status(400, "the stand-in judge needs a user message with text"))
        for pattern in self.patterns:
            fields = pattern.parse(message)
            if fields is not None:
                try:
                    reply = getattr(self, f"_{pattern.kind}")(fields, pattern.name)
                except ValueError as e:
                    return self._count("unrecognised", Status(400, f"stand-in judge: {pattern.name} prompt: {e}"))
                return self._count(pattern.kind, Reply(json.dumps(reply)))
        names = ", ".join(p.name for p in self.patterns)
        return self._count("unrecognised", Status(
            400, f"the stand-in judge did not recognise this request; it answers these prompts only: {names} "
                 "(give your own template files with --prompt KIND=FILE)"))

    def _count(self, kind: str, answer: Reply | Status) -> Reply | Status:
        with self._lock:
            self.counts[kind] += 1
        if self.log is not None:
            what = answer.content if isinstance(answer, Reply) else f"HTTP {answer.code}: {answer.message}"
            self.log(f"{kind}: {what[:200]}")
        return answer

    def _cluster(self, f: dict[str, str], prompt: str) -> dict[str, Any]:
        from ..clustering.base import relabel

        n, degenerate = int(f["N"]), int(f.get("DEGENERATE") or 100)
        responses = split_responses(f["RESPONSES"], n)
        backend, clusterer = self.clusterers.get(prompt.removeprefix("clustering "), self.clusterers["file"])
        with self._lock:  # clusterers need not be thread-safe
            result = clusterer.cluster(f.get("PROBLEM", ""), responses)
        ids = relabel([None if i == result.degenerate else i for i in result.ids], degenerate)
        return {str(k): {"reasoning": f"stand-in ({backend}): " + ("degenerate" if i == degenerate else f"strategy {i}"),
                         "cluster_id": i} for k, i in enumerate(ids, 1)}

    def _build(self, f: dict[str, str], prompt: str) -> dict[str, Any]:
        max_items = int(f.get("MAX_ITEMS") or 6)
        return build_rubric(f.get("REFERENCE", ""), int(f.get("MAX_PROCESS") or max_items - 1))

    def _score(self, f: dict[str, str], prompt: str) -> dict[str, Any]:
        ids = re.findall(r'"([^"]+)"', f.get("KEYS", ""))
        rubric = f.get("RUBRIC", "")
        if not ids:
            ids = re.findall(r"^(\S+) \((?:outcome|process)\): ", rubric, re.M)
        starts = [re.search(rf"(?m)^{re.escape(i)} \((?:outcome|process)\): ", rubric) for i in ids]
        if not ids or not all(starts):
            raise ValueError("the rubric's items were not found")
        bounds = [m.end() for m in starts] + [len(rubric)]
        texts = [rubric[bounds[k]:starts[k + 1].start() if k + 1 < len(ids) else len(rubric)] for k in range(len(ids))]
        attempt = f.get("RESPONSE", "")
        return {i: vars(judge_item(text, attempt)) for i, text in zip(ids, texts)}


def _builtin_patterns() -> list[PromptPattern]:
    from ..clustering.judge import BUILTIN_PROMPTS, load_template
    from ..rewards.rubric.prompts import load_template as rubric_template

    patterns = [PromptPattern(kind, rubric_template(kind), f"rubric {kind}") for kind in ("score", "build")]
    patterns += [PromptPattern("cluster", load_template(p), f"clustering {p}") for p in BUILTIN_PROMPTS]
    return patterns
