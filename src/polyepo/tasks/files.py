"""Rows of a local problem file in any common format, each with where it came from.

:func:`read_rows` reads, by the path's suffix:

- ``.jsonl`` / ``.ndjson``: one JSON object per line (standard library);
- ``.json``: a JSON array of objects (or JSON lines under a ``.json`` name);
- ``.csv`` / ``.tsv``: a header row, then one problem per row (values are strings; a column
  holding JSON, such as ``test_cases``, is decoded where the task expects it);
- ``.parquet``: through ``pyarrow`` (a dependency of ``datasets``), without a cache copy;
- ``.arrow``: a ``datasets`` Arrow file (``Dataset.from_file``, memory-mapped);
- a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
  (``datasets.load_from_disk``). A ``DatasetDict`` gives the split named like the task's split,
  or its only split; ``PATH#NAME`` picks another (``test=data/mbpp#validation``).

Nothing is downloaded: the ``datasets`` library is imported with its offline flags set
(``HF_DATASETS_OFFLINE=1``, ``HF_HUB_OFFLINE=1``). Every error names the file (and the line or
row); a binary file is never decoded as text, and a directory is never "missing".
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..io import numbered_jsonl, read_text

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
            ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "arrow", "datasets folder")

Located = list[tuple[str, dict[str, Any]]]


def read_rows(source: str | os.PathLike, split: str | None = None) -> Located:
    """``(location, row)`` for every row of ``source`` (see the module docstring).

    ``split`` chooses the split of a ``DatasetDict`` folder when the path does not name one.
    """
    text = str(source)
    path, chosen = Path(text).expanduser(), None
    if not path.exists() and "#" in text:
        base, _, chosen = text.rpartition("#")
        path = Path(base).expanduser()
    if not path.exists():
        raise ValueError(f"data file {path} does not exist")
    if path.is_dir():
        return _folder(path, chosen or split, explicit=chosen is not None)
    if chosen is not None:
        raise ValueError(f"{text}: '#{chosen}' picks a split of a datasets folder, but {path} is a file")
    fmt = SUFFIXES.get(path.suffix.lower()) or _sniff(path)
    reader = {"jsonl": _jsonl, "json": _json, "csv": _csv, "tsv": _csv, "parquet": _parquet, "arrow": _arrow}[fmt]
    return reader(path)


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\xff\xff\xff\xff") or head.startswith(b"ARROW1"):
        return "arrow"
    if head.lstrip().startswith(b"["):
        return "json"
    if head.lstrip().startswith(b"{"):
        return "jsonl"
    raise ValueError(f"{path}: cannot tell the format from the name; use one of the suffixes "
                     f"{', '.join(SUFFIXES)} (or a datasets folder)")


def _objects(rows: list[Any], where: list[str]) -> Located:
    for w, row in zip(where, rows):
        if not isinstance(row, dict):
            raise ValueError(f"{w}: each row must be an object with named fields, got {type(row).__name__}")
    return list(zip(where, rows))


def _jsonl(path: Path, text: str | None = None) -> Located:
    return [(f"{path}:{i}", obj) for i, obj in numbered_jsonl(path, text)]


def _json(path: Path) -> Located:
    text = read_text(path, "JSON file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON lines under a .json name
            return _jsonl(path, text)
        raise ValueError(f"{path}:{e.lineno}: not valid JSON (column {e.colno}: {e.msg})") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) == 1:  # {"data": [...]} or similar
            data = data[lists[0]]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of problem objects (or JSON lines), "
                         f"got {type(data).__name__}")
    return _objects(data, [f"{path}[{i}]" for i in range(len(data))])


def _csv(path: Path) -> Located:
    text = read_text(path, "CSV file")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # test columns can be long
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
        rows = [(f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}) for row in reader]
    except csv.Error as e:
        raise ValueError(f"{path}: not valid CSV ({e})") from None
    if not rows and not reader.fieldnames:
        raise ValueError(f"{path}: empty CSV file (a header row is expected)")
    return rows


def _parquet(path: Path) -> Located:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"reading {path} needs pyarrow, which comes with the datasets package "
                         "(pip install 'polyepo[train]')") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError ... for a damaged file
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    return _objects(rows, [f"{path} row {i}" for i in range(1, len(rows) + 1)])


def _datasets():
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise ValueError("reading Arrow files and datasets folders needs the datasets package "
                         "(pip install 'polyepo[train]')") from None
    return datasets


def _rows_of(dataset: Any, where: str) -> Located:
    return _objects(dataset.to_list(), [f"{where} row {i}" for i in range(1, len(dataset) + 1)])


def _arrow(path: Path) -> Located:
    datasets = _datasets()
    try:
        dataset = datasets.Dataset.from_file(str(path))
    except Exception as e:  # not an Arrow stream
        raise ValueError(f"{path}: not a readable Arrow file of the datasets library ({e})") from None
    return _rows_of(dataset, str(path))


def _folder(path: Path, split: str | None, *, explicit: bool) -> Located:
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        found = sorted(p.name for p in path.iterdir())[:8]
        raise ValueError(f"{path} is a directory but not a datasets folder written by save_to_disk (no "
                         f"dataset_dict.json or state.json; it holds {', '.join(found) or 'nothing'}); "
                         f"point at a data file ({', '.join(FORMATS[:-1])}) or such a folder")
    datasets = _datasets()
    loaded = datasets.load_from_disk(str(path))
    if not isinstance(loaded, datasets.DatasetDict):
        if explicit:
            raise ValueError(f"{path}#{split}: this folder holds one dataset, not a DatasetDict with splits")
        return _rows_of(loaded, str(path))
    names = list(loaded)
    if split in loaded:
        return _rows_of(loaded[split], f"{path}#{split}")
    if len(names) == 1 and not explicit:
        return _rows_of(loaded[names[0]], f"{path}#{names[0]}")
    raise ValueError(f"{path} holds the splits {', '.join(names)}"
                     + (f" but no {split!r}" if split else "") + f"; pick one with {path}#NAME")
