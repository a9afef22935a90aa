"""The results file of an evaluation: every sample, its reward, its cluster id, in JSONL.

Layout (one JSON object per line, the first one the header)::

    {"kind": "header", "format": "polyepo-eval-results", "version": 1, "sampling": {...},
     "model": {...}, "task": {...}, "reward": {...}, "clusterer": {...}, ...}
    {"kind": "problem", "index": 0, "problem_id": "test-0", "prompt": ..., "columns": {...},
     "completions": [...], "num_tokens": [...], "finished": [...],
     "rewards": [...], "clusters": [...], "cluster_info": {...}, "reward_info": {...}}
    ...

While an evaluation runs, ``{"kind": "samples", "problem_id": ..., "start": s, ...}`` lines
hold chunks of a problem's samples that are generated but not yet scored; they let an
interrupted run resume without drawing them again. A finished file is compacted: those lines
are dropped, one ``problem`` line per problem remains. A torn last line (a crash mid-write)
is ignored on reading and cut off before appending.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "polyepo-eval-results"
VERSION = 1
#: Header sections that must be equal before samples are appended to an existing file.
MUST_MATCH = ("sampling", "model", "task", "reward", "clusterer", "correct_threshold")


@dataclass
class Results:
    """A results file read back: its header and its scored problems (in problem order).

    ``chunks`` maps problem ids to the sample chunks of problems not scored yet
    (``{start: record}``); it is empty for a finished file.
    """

    path: Path
    header: dict[str, Any]
    problems: list[dict[str, Any]]
    chunks: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    torn_bytes: int = 0
    """Bytes of a torn last line that were ignored (0 for a clean file)."""

    @property
    def n(self) -> int:
        return int(self.header["sampling"]["n"])

    @property
    def label(self) -> str:
        return str(self.header.get("label") or self.header["model"].get("spec", "model"))

    @property
    def correct_threshold(self) -> float:
        return float(self.header.get("correct_threshold", 1.0))

    def correct(self, problem: dict[str, Any]) -> list[bool]:
        """Verdicts of one problem's samples: reward present and >= the correct threshold."""
        t = self.correct_threshold
        return [r is not None and float(r) >= t for r in problem["rewards"]]

    @property
    def complete(self) -> bool:
        expected = self.header["task"].get("problems")
        return not self.chunks and expected is not None and len(self.problems) == int(expected)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in a results file: {obj!r}")


def dumps(record: dict[str, Any]) -> str:
    """One JSONL line (no newline); NaN is refused so every file stays standard JSON."""
    return json.dumps(record, default=_json_default, allow_nan=False, ensure_ascii=False)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(end offset, line) for every newline-terminated line; a torn last line is not yielded."""
    offset = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            offset += len(line)
            yield offset, line


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header line of a results file, without reading the rest."""
    with open(path, encoding="utf-8") as fh:
        line = fh.readline()
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != "header":
        raise ValueError(f"{path} is not a polyepo results file (no header on line 1)")
    return header


def read_results(path: str | os.PathLike) -> Results:
    """Read a results file (finished or interrupted). Raises ValueError on a foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results file {path} does not exist")
    header: dict[str, Any] | None = None
    problems: dict[str, dict[str, Any]] = {}
    chunks: dict[str, dict[int, dict[str, Any]]] = {}
    good = 0
    for end, line in _lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line ending at byte {end} is not JSON ({e})") from None
        if header is None:
            if rec.get("kind") != "header" or rec.get("format") != FORMAT:
                raise ValueError(f"{path} is not a polyepo results file (no {FORMAT!r} header on line 1)")
            if rec.get("version") != VERSION:
                raise ValueError(f"{path}: results format version {rec.get('version')}, this polyepo reads {VERSION}")
            header = rec
        elif rec.get("kind") == "problem":
            problems[rec["problem_id"]] = rec
        elif rec.get("kind") == "samples":
            chunks.setdefault(rec["problem_id"], {})[int(rec["start"])] = rec
        good = end
    if header is None:
        raise ValueError(f"{path} is empty or has no complete header line")
    for pid in problems:
        chunks.pop(pid, None)
    ordered = sorted(problems.values(), key=lambda r: r["index"])
    return Results(path, header, ordered, chunks, torn_bytes=path.stat().st_size - good)


def header_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The :data:`MUST_MATCH` entries in which two headers differ, as ``key: old -> new`` lines."""
    out = []
    for section in MUST_MATCH:
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
        elif a != b:
            out.append(f"{section}: {a!r} -> {b!r}")
    return out


class ResultsWriter:
    """Appends records to a results file, creating it with ``header`` if it does not exist.

    An existing file must have a header equal to ``header`` on :data:`MUST_MATCH` (else
    ValueError listing the differences); a torn last line is cut off first.
    """

    def __init__(self, path: str | os.PathLike, header: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0:
            existing = read_results(self.path)
            diffs = header_differences(existing.header, header)
            if diffs:
                raise ValueError(
                    f"{self.path} was produced with different settings; refusing to append to it "
                    "(use another --out, or delete the file to start over):\n  " + "\n  ".join(diffs))
            if existing.torn_bytes:
                with open(self.path, "r+b") as fh:
                    fh.truncate(self.path.stat().st_size - existing.torn_bytes)
            self.results = existing
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", encoding="utf-8") as fh:
                fh.write(dumps(header) + "\n")
            self.results = Results(self.path, header, [])
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(dumps(record) + "\n")
        self._fh.flush()  # a killed process loses at most the line being written

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_results(path: str | os.PathLike, header: dict[str, Any], problems: list[dict[str, Any]]) -> Path:
    """Write a complete results file atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(dumps(header) + "\n")
        for rec in sorted(problems, key=lambda r: r["index"]):
            fh.write(dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def compact(path: str | os.PathLike) -> Results:
    """Drop the chunk lines of a finished file (rewritten atomically); returns it read back."""
    res = read_results(path)
    if res.chunks:
        raise ValueError(f"{path}: problems {sorted(res.chunks)[:5]} are not scored yet; not compacting")
    write_results(res.path, res.header, res.problems)
    return read_results(path)
