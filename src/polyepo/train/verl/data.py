"""Task rows -> verl's RL parquet files, with seed 002's base-pass-rate filter.

verl reads a parquet file whose rows hold ``data_source``, ``prompt`` (chat messages),
``ability``, ``reward_model`` (``{"style": "rule", "ground_truth": ...}``) and
``extra_info``. polyepo's reward adapter needs the task row's own columns (``test``,
``entry_point``, ``answer`` ...); they travel losslessly as ONE JSON string,
``extra_info["polyepo_row"]``, so the parquet schema stays flat whatever the task
(:func:`polyepo.train.verl.reward.compute_score` decodes it).

Input rows follow the task protocol (``polyepo.tasks``): a ``prompt`` (string or chat
messages), a ``problem_id``, and the reward's columns. They come from a registered task
(``--task humaneval``) or a JSONL file of such rows (``--jsonl train.jsonl``, e.g. a
leetcode2k export).

    python -m polyepo.train.verl.data --jsonl leetcode2k.jsonl --out data/train.parquet \
        --pass-counts base_pass.jsonl --min-pass 1 --max-pass 12
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...io import read_jsonl


def filter_by_pass_rate(
    rows: Sequence[Mapping[str, Any]], counts: Iterable[Mapping[str, Any]], min_pass: int, max_pass: int
) -> list[Mapping[str, Any]]:
    """Rows whose base model passed between ``min_pass`` and ``max_pass`` samples (inclusive).

    ``counts``: one ``{"problem_id", "passed"}`` record per problem (e.g. from an evaluation
    of the base model with n = 16 samples; seed 002 kept 1..12 of 16). A row with no count
    raises: silently keeping or dropping it would change the training set unseen.
    """
    if not 0 <= min_pass <= max_pass:
        raise ValueError(f"need 0 <= min_pass <= max_pass, got min_pass={min_pass}, max_pass={max_pass}")
    passed: dict[str, int] = {}
    for rec in counts:
        if "problem_id" not in rec or "passed" not in rec:
            raise ValueError(f"pass-count records need 'problem_id' and 'passed'; got keys {sorted(rec)}")
        passed[str(rec["problem_id"])] = int(rec["passed"])
    missing = [str(r["problem_id"]) for r in rows if str(r["problem_id"]) not in passed]
    if missing:
        raise ValueError(f"{len(missing)} problem(s) have no pass count, e.g. {missing[:3]}")
    return [r for r in rows if min_pass <= passed[str(r["problem_id"])] <= max_pass]


def to_verl_row(row: Mapping[str, Any], index: int, *, data_source: str, ability: str, answer_key: str) -> dict:
    """One task row as one verl RL row (see the module docstring)."""
    for key in ("prompt", "problem_id"):
        if key not in row:
            raise ValueError(f"row {index} has no {key!r} column (task rows need 'prompt' and 'problem_id')")
    prompt, answer = row["prompt"], row.get(answer_key)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return {
        "data_source": data_source,
        "prompt": messages,
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": "" if answer is None else answer if isinstance(answer, str) else json.dumps(answer)},
        "extra_info": {"index": index, "problem_id": str(row["problem_id"]), "polyepo_row": json.dumps(row)},
    }


def write_parquet(rows: Sequence[Mapping[str, Any]], out: str | Path) -> Path:
    """Write verl rows to ``out`` (needs pandas + pyarrow, which verl installs)."""
    import pandas as pd

    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(list(rows)).to_parquet(path)
    return path


def _task_rows(name: str, options: list[str], split: str) -> list[dict[str, Any]]:
    from ...settings import parse_key_values
    from ...tasks import load_task

    try:
        opts = parse_key_values(options, what="--task-option")
    except ValueError as e:
        raise SystemExit(str(e)) from None
    return load_task(name, **opts).rows(split)


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m polyepo.train.verl.data", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--jsonl", help="task-protocol rows, one JSON object per line")
    src.add_argument("--task", help="a registered task name (polyepo.tasks.TASKS)")
    p.add_argument("--task-option", action="append", default=[], help="KEY=VALUE option of --task (repeatable)")
    p.add_argument("--split", default="train", help="split of --task")
    p.add_argument("--out", required=True, help="parquet file to write")
    p.add_argument("--data-source", default=None, help="verl data_source (default: task name or file stem)")
    p.add_argument("--ability", default="code", help="verl ability tag (code, math ...)")
    p.add_argument("--answer-key", default="answer", help="column copied to reward_model.ground_truth")
    p.add_argument("--pass-counts", help="JSONL of {problem_id, passed} for the base model")
    p.add_argument("--min-pass", type=int, default=1, help="keep problems passed at least this often")
    p.add_argument("--max-pass", type=int, default=12, help="... and at most this often")
    a = p.parse_args(argv)
    rows = read_jsonl(a.jsonl) if a.jsonl else _task_rows(a.task, a.task_option, a.split)
    source = a.data_source or (a.task or Path(a.jsonl).stem)
    if a.pass_counts:
        rows = filter_by_pass_rate(rows, read_jsonl(a.pass_counts), a.min_pass, a.max_pass)
    out = write_parquet([to_verl_row(r, i, data_source=source, ability=a.ability, answer_key=a.answer_key)
                         for i, r in enumerate(rows)], a.out)
    print(f"wrote {len(rows)} rows to {out}")


if __name__ == "__main__":
    main()
