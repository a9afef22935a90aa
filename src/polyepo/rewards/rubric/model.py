"""Rubrics as data: checkable items, verdicts, scores, and the editable file format.

A rubric is a short list of milestones written from a problem's reference solution:
*outcome* items (what a fully correct final result is or does) and *process* items (the key
intermediate steps that are real progress). Each item has a weight (default 1). The judge
gives every item a verdict in :data:`VERDICTS`; the outcome score and the process score are
the weighted means of the verdict values over the outcome and the process items:

    outcome = sum_{i in O} w_i v_i / sum_{i in O} w_i        process = the same over P

so both lie in [0, 1]. Item ids are ``O1, O2, ...`` and ``P1, P2, ...`` by position.

A rubric file is YAML, meant to be read and edited by hand::

    problem_id: divisor-sum-360
    fingerprint: 9c1e...        # of the problem + reference it was built from ("" = hand-written)
    source: judge               # judge | hand
    outcome:
      - The final answer is 1170.
    process:
      - Factors 360 as 2^3 * 3^2 * 5.
      - text: Uses that the divisor sum is multiplicative over prime powers.
        weight: 2
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: verdict -> credit of the item
VERDICTS: dict[str, float] = {"met": 1.0, "partial": 0.5, "missed": 0.0}
KINDS = ("outcome", "process")
_PREFIX = {"outcome": "O", "process": "P"}


@dataclass(frozen=True)
class RubricItem:
    """One checkable milestone. ``kind`` is ``outcome`` or ``process``; ``weight`` > 0."""

    id: str
    kind: str
    text: str
    weight: float = 1.0


@dataclass
class Rubric:
    """The rubric of one problem. ``source``: ``judge`` (built), ``hand`` (written or edited)."""

    problem_id: str
    items: list[RubricItem]
    fingerprint: str = ""
    source: str = "hand"
    model: str = ""
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"rubric of {self.problem_id!r}" + (f" ({self.path})" if self.path else "")
        for kind in KINDS:
            if not any(i.kind == kind for i in self.items):
                raise ValueError(f"{where} needs at least one {kind} item")
        ids = [i.id for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{where} has duplicate item ids: {ids}")
        for item in self.items:
            if item.kind not in KINDS:
                raise ValueError(f"{where}: item {item.id} has kind {item.kind!r}; valid kinds: {', '.join(KINDS)}")
            if not item.text.strip():
                raise ValueError(f"{where}: item {item.id} has no text")
            if not item.weight > 0:
                raise ValueError(f"{where}: item {item.id} must have a weight > 0, got {item.weight!r}")

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.items]

    def render(self) -> str:
        """The rubric as the judge sees it: one ``ID (kind): text`` line per item."""
        return "\n".join(f"{i.id} ({i.kind}): {i.text.strip()}" for i in self.items)

    def scores(self, verdicts: Mapping[str, str]) -> tuple[float, float]:
        """``(outcome, process)`` in [0, 1] from ``{item id: verdict}`` (weighted means)."""
        out = []
        for kind in KINDS:
            items = [i for i in self.items if i.kind == kind]
            total = sum(i.weight for i in items)
            out.append(sum(i.weight * VERDICTS[verdicts[i.id]] for i in items) / total)
        return out[0], out[1]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"problem_id": self.problem_id, "fingerprint": self.fingerprint,
                                "source": self.source}
        if self.model:
            data["model"] = self.model
        for kind in KINDS:
            data[kind] = [i.text if i.weight == 1 else {"text": i.text, "weight": i.weight}
                          for i in self.items if i.kind == kind]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, problem_id: str | None = None,
                  path: Path | None = None) -> Rubric:
        """A rubric from the file format (``outcome:``/``process:`` lists of texts or
        ``{text, weight}``), or from ``items: [{kind, text, weight}]``."""
        where = str(path) if path else "rubric"
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping with 'outcome' and 'process' lists, got {type(data).__name__}")
        pid = str(data.get("problem_id") or problem_id or "")
        entries: list[tuple[str, Any]] = []
        if "items" in data:
            for raw in data["items"] or []:
                kind = raw.get("kind") if isinstance(raw, Mapping) else None
                entries.append((str(kind), raw))
        for kind in KINDS:
            value = data.get(kind) or []
            if not isinstance(value, list):
                raise ValueError(f"{where}: '{kind}' must be a list of items, got {type(value).__name__}")
            entries += [(kind, raw) for raw in value]
        counts = dict.fromkeys(KINDS, 0)
        items = []
        for kind, raw in entries:
            if kind not in KINDS:
                raise ValueError(f"{where}: item {raw!r} has kind {kind!r}; valid kinds: {', '.join(KINDS)}")
            counts[kind] += 1
            text, weight = (raw, 1.0) if isinstance(raw, str) else (raw.get("text", ""), raw.get("weight", 1.0))
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: weight of {text!r} must be a number, got {weight!r}") from None
            items.append(RubricItem(f"{_PREFIX[kind]}{counts[kind]}", kind, str(text), weight))
        items.sort(key=lambda i: (KINDS.index(i.kind), int(i.id[1:])))
        return cls(pid, items, fingerprint=str(data.get("fingerprint") or ""),
                   source=str(data.get("source") or "hand"), model=str(data.get("model") or ""), path=path)

    @classmethod
    def load(cls, path: str | Path, *, problem_id: str | None = None) -> Rubric:
        p = Path(path).expanduser()
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"rubric file {p} does not exist") from None
        except yaml.YAMLError as e:
            raise ValueError(f"rubric file {p} is not valid YAML: {e}") from None
        return cls.from_dict(data or {}, problem_id=problem_id, path=p)

    def save(self, path: str | Path) -> Path:
        """Write the file atomically (a concurrent reader sees the old or the new file)."""
        p = Path(path).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        header = (f"# Rubric of problem {self.problem_id!r}. Edit freely: the file is read as it is;\n"
                  "# items are renumbered O1.., P1.. by position. Delete the file to build it again.\n")
        text = header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
        self.path = p
        return p


def fingerprint(problem: str, reference: str) -> str:
    """A short digest of the problem and the reference (what a built rubric depends on)."""
    blob = json.dumps([problem.strip(), reference.strip()], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def rubric_from_value(value: Any, problem_id: str) -> Rubric | None:
    """A rubric column's value: None/"" (no rubric), a file path, or an inline mapping."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (str, os.PathLike)):
        return Rubric.load(value, problem_id=problem_id)
    if isinstance(value, Mapping):
        return Rubric.from_dict(value, problem_id=problem_id)
    raise ValueError(f"the rubric column of {problem_id!r} must be a file path or a mapping, got {type(value).__name__}")


def file_name(problem_id: str) -> str:
    """A safe file name for ``problem_id``; a digest is added when characters were replaced."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", problem_id).strip("._")[:80] or "problem"
    if safe != problem_id:
        safe += "-" + hashlib.sha256(problem_id.encode("utf-8")).hexdigest()[:8]
    return safe + ".yaml"


class RubricStore:
    """Rubric files in one directory, ``<dir>/<problem id>.yaml``: the cache of built rubrics
    and the place where edited ones are read from."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def path_for(self, problem_id: str) -> Path:
        return self.directory / file_name(problem_id)

    def load(self, problem_id: str) -> Rubric | None:
        path = self.path_for(problem_id)
        return Rubric.load(path, problem_id=problem_id) if path.is_file() else None

    def save(self, rubric: Rubric) -> Path:
        return rubric.save(self.path_for(rubric.problem_id))


def items_from_lists(outcome: Sequence[str], process: Sequence[str]) -> list[RubricItem]:
    """Items ``O1..``, ``P1..`` of weight 1 from two lists of texts."""
    return ([RubricItem(f"O{k}", "outcome", t) for k, t in enumerate(outcome, 1)]
            + [RubricItem(f"P{k}", "process", t) for k, t in enumerate(process, 1)])
