"""``output_dir/groups.jsonl``: every group of every step, as the trainer saw it (``log_groups``).

One JSON line per group: ``step`` (optimizer steps done when the batch was generated),
``mode`` (``train`` or ``eval``), ``group`` (its index in the batch), ``prompt``, ``responses``,
``rewards`` (null where every reward function declined), ``clusters`` (ids; null without a
clusterer), ``failed``, ``policy`` and ``error`` (the clusterer's failure policy, when it
failed) and ``advantages``. A line is a group that ``polyepo cluster`` and ``polyepo advantage``
read as it is, so any step can be checked by hand. A resumed run first drops the lines of the
steps it repeats. Written by the main process only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...clustering import ClusterResult

FILENAME = "groups.jsonl"


def log_path(output_dir: str | Path) -> Path:
    """Where a run in ``output_dir`` writes its groups."""
    return Path(output_dir) / FILENAME


def group_lines(step: int, mode: str, prompts: Sequence[str], texts: Sequence[str], rewards: np.ndarray,
                advantages: np.ndarray, results: Sequence[ClusterResult] | None, group_size: int) -> list[dict[str, Any]]:
    """The lines of one batch of adjacent groups of ``group_size`` rows."""
    lines = []
    for k, s in enumerate(range(0, len(texts), group_size)):
        rows = slice(s, s + group_size)
        res = None if results is None else results[k]
        lines.append({
            "step": step, "mode": mode, "group": k, "prompt": prompts[s], "responses": list(texts[rows]),
            "rewards": [None if math.isnan(r) else float(r) for r in rewards[rows]],
            "clusters": None if res is None else [int(i) for i in res.ids],
            "failed": bool(res is not None and res.failed), "policy": None if res is None else res.policy,
            "error": None if res is None else res.error,
            "advantages": [float(a) for a in advantages[rows]],
        })
    return lines


class JsonlLog:
    """A JSONL file of rows with a ``step`` (log.jsonl, groups.jsonl): :meth:`write` appends,
    :meth:`drop_from` forgets the steps a resumed run repeats."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def write(self, lines: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)

    def drop_from(self, step: int) -> None:
        """Remove the lines of ``step`` or later (lines without a step are kept)."""
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        keep = [line for line in lines if _step(line) < step]
        if len(keep) < len(lines):
            self.path.write_text("".join(keep))


def _step(line: str) -> float:
    try:
        step = json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return 0
    return step if isinstance(step, (int, float)) else 0
