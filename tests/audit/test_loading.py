"""Reading training data: every format gives the same records; bad input names file and line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from whetstone.audit.config import ColumnSpec
from whetstone.audit.loading import Dataset, Malformed, Record
from whetstone.errors import DataError

ROWS = [
    {"id": "a1", "text": "My invoice is wrong", "label": "billing"},
    {"id": "a2", "text": "App crashes, on start", "label": "bug"},
    {"id": "a3", "text": 'She said "hi"\tthere', "label": "how_to"},
]


def write(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def texts(ds: Dataset) -> list[tuple[str, str, str | None]]:
    return [(r.id, r.text, r.label) for r in ds.load().records]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_formats_read_the_same_records(tmp_path: Path, fmt: str) -> None:
    ds = Dataset(write(tmp_path / f"d.{fmt}", ROWS, fmt))
    assert texts(ds) == [(r["id"], r["text"], r["label"]) for r in ROWS]
    assert ds.layout.text == "text" and ds.layout.label == "label" and ds.layout.id == "id"


def test_tsv_with_and_without_header(tmp_path: Path) -> None:
    body = "I love it\t1\nterrible , just terrible\t0\n"
    with_header = tmp_path / "h.tsv"
    with_header.write_text("sentence\tlabel\n" + body, encoding="utf-8")
    assert texts(Dataset(with_header)) == [
        ("0", "I love it", "1"),
        ("1", "terrible , just terrible", "0"),
    ]
    bare = tmp_path / "bare.tsv"
    bare.write_text("The Federal Trade Commission has filed its first spyware case\tSci/Tech\n")
    with pytest.raises(DataError, match=r"bare\.tsv.*--columns text,label"):
        Dataset(bare)
    ds = Dataset(bare, ColumnSpec(names=["text", "label"]))
    assert texts(ds) == [
        ("0", "The Federal Trade Commission has filed its first spyware case", "Sci/Tech")
    ]


def test_pairs_and_chat_messages(tmp_path: Path) -> None:
    pairs = write(tmp_path / "p.jsonl", [{"prompt": "Q?", "response": "A."}], "jsonl")
    rec = Dataset(pairs).load().records[0]
    assert (rec.text, rec.prompt, rec.response) == ("Q?\nA.", "Q?", "A.")
    alpaca = write(
        tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "2 and 3", "output": "5"}], "jsonl"
    )
    assert Dataset(alpaca).load().records[0].text == "Sum\n2 and 3\n5"
    chat = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ]
    rec = Dataset(write(tmp_path / "c.jsonl", chat, "jsonl")).load().records[0]
    assert (rec.prompt, rec.response) == ("hi", "yo")
    named = write(tmp_path / "n.jsonl", [{"q": "x", "a": "y", "id": 3}], "jsonl")
    rec = Dataset(named, ColumnSpec(prompt="q", response="a")).load().records[0]
    assert (rec.id, rec.text) == ("3", "x\ny")


def test_malformed_rows_become_findings_or_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"text": "fine", "label": "a"}\n'
        "\n"
        '{"text": "broken", "label": \n'
        '["a list"]\n'
        '{"text": ["not", "text"], "label": "a"}\n'
        '{"label": "a"}\n'
        '{"text": "fine too", "label": "b"}\n',
        encoding="utf-8",
    )
    chunk = Dataset(path).load()
    assert [r.id for r in chunk.records] == ["0", "5"]
    assert [(m.line, m.id) for m in chunk.malformed] == [(3, "1"), (4, "2"), (5, "3"), (6, "4")]
    assert "invalid JSON" in chunk.malformed[0].error and "column" in chunk.malformed[0].error
    assert "holds a list" in chunk.malformed[2].error
    assert "column 'text' is missing" in chunk.malformed[3].error
    with pytest.raises(DataError, match=r"bad\.jsonl:3: invalid JSON: .*\(column \d+\)"):
        Dataset(path, strict=True).load()


def test_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\nok,a\ntoo,many,fields\nfine,b\n", encoding="utf-8")
    chunk = Dataset(path).load()
    assert [r.text for r in chunk.records] == ["ok", "fine"]
    assert isinstance(chunk.malformed[0], Malformed)
    assert chunk.malformed[0].line == 3 and "expected 2 comma-separated fields, found 3" in (
        chunk.malformed[0].error
    )


@pytest.mark.parametrize(
    ("content", "name", "spec", "message"),
    [
        (None, "missing.jsonl", ColumnSpec(), "file not found"),
        ("", "empty.jsonl", ColumnSpec(), "the file is empty"),
        ("x", "data.xlsx", ColumnSpec(), "unsupported file type '.xlsx'"),
        ('{"body2": "x"}\n', "d.jsonl", ColumnSpec(), "no text column found .*'body2'"),
        (
            '{"text": "x"}\n',
            "d.jsonl",
            ColumnSpec(label="intent"),
            r"column 'intent' \(--label-column\) is not in the file \(columns: 'text'\)",
        ),
        (b"text,label\n\xff\xfe,a\n", "d.csv", ColumnSpec(), r"d\.csv:2: not UTF-8"),
    ],
)
def test_bad_input_is_one_clear_error(
    tmp_path: Path, content: str | bytes | None, name: str, spec: ColumnSpec, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        Dataset(path, spec).load()


def test_repeated_ids_are_made_unique_and_reported(tmp_path: Path) -> None:
    rows = [{"id": "x", "text": "one"}, {"id": "x", "text": "two"}, {"id": "y", "text": "3"}]
    ds = Dataset(write(tmp_path / "d.jsonl", rows, "jsonl"))
    records: list[Record] = ds.load().records
    assert [r.id for r in records] == ["x", "x#row1", "y"]
    assert ds.duplicate_ids == ["x"]


def test_eval_files_may_lack_the_named_label_and_id_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "eval.jsonl", [{"text": "no label here"}], "jsonl")
    spec = ColumnSpec(label="intent", id="ticket")
    with pytest.raises(DataError, match="'intent'"):
        Dataset(path, spec)
    ds = Dataset(path, spec, role="eval")
    assert ds.layout.label is None and ds.layout.id is None
    assert texts(ds) == [("0", "no label here", None)]
