"""Own data: the file tasks read JSONL, JSON, CSV, Parquet, Arrow and datasets folders alike,
map columns, and fail with the file and the place on bad input."""

from __future__ import annotations

import csv
import json

import pytest

from polyepo.io import read_jsonl
from polyepo.tasks import load_task
from polyepo.tasks.files import read_rows

PROBLEMS = [
    {"id": "add", "question": "Add two numbers.", "test": "def check(f):\n    assert f(2, 3) == 5\n", "entry_point": "add"},
    {"id": "double", "question": "Print the input doubled.",
     "test_cases": json.dumps([{"input": "4\n", "output": "8\n"}])},
]


def write(path, rows):
    """``rows`` written in the format that ``path``'s suffix names (or a datasets folder)."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows, indent=1))
    elif suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    else:
        datasets = pytest.importorskip("datasets")
        keys = sorted({k for r in rows for k in r})
        ds = datasets.Dataset.from_list([{k: r.get(k) for k in keys} for r in rows])  # one schema for all rows
        if suffix == ".parquet":
            ds.to_parquet(str(path))
        elif suffix == ".arrow":
            import pyarrow as pa

            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, ds.data.table.schema) as writer:
                writer.write_table(ds.data.table)
        else:
            ds.save_to_disk(str(path))
    return str(path)


@pytest.mark.parametrize("name", ["p.jsonl", "p.json", "p.csv", "p.parquet", "p.arrow", "folder"])
def test_every_format_gives_the_same_rows(tmp_path, name):
    reference = load_task("jsonl_code", train=write(tmp_path / "ref.jsonl", PROBLEMS)).rows("train")
    path = write(tmp_path / name, PROBLEMS)
    rows = load_task("jsonl_code", train=path).rows("train")
    assert [r["problem_id"] for r in rows] == ["add", "double"]
    for got, want in zip(rows, reference):
        assert got["prompt"] == want["prompt"]
        for key in ("test", "entry_point", "test_cases"):
            assert (got.get(key) or None) == (want.get(key) or None), key


def test_dataset_dict_folder_takes_the_split_of_the_same_name(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    math = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(math[:3]),
                          "validation": datasets.Dataset.from_list(math[3:])}).save_to_disk(str(folder))
    task = load_task("jsonl_math", train=str(folder), test=f"{folder}#validation")
    assert [r["answer"] for r in task.rows("train")] == ["0", "2", "4"]
    assert [r["answer"] for r in task.rows("test")] == ["6", "8"]
    with pytest.raises(ValueError, match=r"holds the splits train, validation but no 'test'; pick one with .*#NAME"):
        load_task("jsonl_math", test=str(folder)).rows("test")
    with pytest.raises(ValueError, match="no 'nope'"):
        load_task("jsonl_math", test=f"{folder}#nope").rows("test")


def test_column_mapping_and_its_errors(tmp_path):
    rows = [{"uid": "q1", "text": "What is 2 + 2?", "final": 4}]
    path = write(tmp_path / "m.jsonl", rows)
    task = load_task("jsonl_math", train=path, columns={"prompt": "text", "answer": "final", "problem_id": "uid"})
    (row,) = task.rows("train")
    assert row["problem_id"] == "q1" and row["answer"] == "4"
    assert row["prompt"][0]["content"].startswith("What is 2 + 2?")
    with pytest.raises(ValueError, match=r"unknown field 'answr' \(did you mean 'answer'\?\); jsonl_math fields: prompt, problem_id, answer"):
        load_task("jsonl_math", train=path, columns={"answr": "final"})
    with pytest.raises(ValueError, match=r"m.jsonl:1: no column 'solution' \(named in columns\); fields here: uid, text, final"):
        load_task("jsonl_math", train=path, columns={"answer": "solution"}).rows("train")
    with pytest.raises(ValueError, match=r"m.jsonl:1: no problem statement .*fields here: uid, text, final"):
        load_task("jsonl_math", train=path).rows("train")


def test_errors_name_the_place(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"plain is a directory but not a datasets folder .*notes.txt"):
        load_task("jsonl_code", train=str(folder)).rows("train")
    with pytest.raises(ValueError, match="does not exist"):
        load_task("jsonl_code", train=str(tmp_path / "missing.parquet")).rows("train")
    bad = tmp_path / "b.csv"
    bad.write_text("question,test_cases\nDouble it.,not json\n")
    with pytest.raises(ValueError, match=r"b.csv:2: test_cases is a string but not JSON"):
        load_task("jsonl_code", train=str(bad)).rows("train")
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"question": "q", "test": "assert True"}\n\n{"question": "r"}\n')
    with pytest.raises(ValueError, match=r"blank.jsonl:3: no tests"):  # the line, not the row number
        load_task("jsonl_code", train=str(blank)).rows("train")


def test_binary_files_are_not_decoded_as_text(tmp_path):
    parquet = write(tmp_path / "p.parquet", PROBLEMS)
    with pytest.raises(ValueError, match=r"p.parquet is not a UTF-8 text file .*Parquet"):
        read_jsonl(parquet)
    disguised = tmp_path / "problems.data"
    disguised.write_bytes((tmp_path / "p.parquet").read_bytes())
    assert [r["id"] for _, r in read_rows(disguised)] == ["add", "double"]  # sniffed by its magic bytes
    with pytest.raises(ValueError, match=r"is a directory, not a JSONL file"):
        read_jsonl(tmp_path)
