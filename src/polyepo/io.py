"""Small file helpers shared by the commands and loaders (standard library only).

Every error names the file, and the line where there is one. Problem sets in other formats
(Parquet, CSV, JSON arrays, ``datasets`` folders) are read by :mod:`polyepo.tasks.files`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def read_text(source: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``source`` (``"-"`` reads standard input), with clear errors for a
    missing file, a directory and a binary file (a Parquet or Arrow file, for example)."""
    if str(source) == "-":
        return sys.stdin.read()
    path = Path(source).expanduser()
    if path.is_dir():
        raise ValueError(f"{path} is a directory, not a {what}")
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a UTF-8 text file (byte {e.start}: {e.reason}); "
                         f"is it a binary file such as Parquet or Arrow?") from None


def _name(source: str | Path) -> str:
    return "<stdin>" if str(source) == "-" else str(source)


def numbered_jsonl(source: str | Path, text: str | None = None) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSONL file (``"-"``: standard input).

    A missing file, a line that is not JSON, or a line that is not an object raises
    ``ValueError`` naming the file and the line number.
    """
    if text is None:
        text = read_text(source, "JSONL file")
    source = _name(source)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}:{i}: not valid JSON (column {e.colno}: {e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{source}:{i}: each line must be a JSON object, got {type(obj).__name__}")
        rows.append((i, obj))
    return rows


def read_jsonl(source: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file (``"-"`` reads standard input); blank lines are skipped.

    Errors name the file and the line number (see :func:`numbered_jsonl`).
    """
    return [obj for _, obj in numbered_jsonl(source)]


def read_json_or_jsonl(source: str | Path) -> list[tuple[str, Any]]:
    """``(location, value)`` pairs of a JSON array or a JSONL file (``"-"``: standard input).

    The location is ``FILE:LINE`` for JSONL and ``FILE[INDEX]`` for an array, so that a caller
    checking the values can say where a bad one is. Errors name the file and the line.
    """
    text = read_text(source)
    source = _name(source)
    if not text.strip():
        raise ValueError(f"{source}: empty input")
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}:{e.lineno}: not valid JSON (column {e.colno}: {e.msg})") from None
        return [(f"{source}[{i}]", v) for i, v in enumerate(values)]
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{source}:{i}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}:{i}: not valid JSON (column {e.colno}: {e.msg})") from None
    return out
