"""Small file helpers shared by the commands and loaders (standard library only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def read_jsonl(source: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file (``"-"`` reads standard input); blank lines are skipped.

    A missing file, a line that is not JSON, or a line that is not an object raises
    ``ValueError`` naming the file and the line number.
    """
    if str(source) == "-":
        text = sys.stdin.read()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ValueError(f"JSONL file {path} does not exist")
        text = path.read_text(encoding="utf-8")
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{source}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{source}:{i}: each line must be a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows
