"""Reading training and eval files (JSONL/JSON/CSV/TSV/Parquet) in chunks, as records.

A file's columns are resolved once (from the header, the first object or the Parquet schema):
the text column, or a prompt/response pair, or a chat ``messages`` list; a label column and an
id column when present. Rows that cannot be read become ``Malformed`` entries (findings), or,
with ``strict``, a ``DataError`` naming the file, the line and the column. Record ids are the id
column's values, else the 0-based row number (as ``whetstone evaluate`` numbers items).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from whetstone.audit.config import ColumnSpec
from whetstone.errors import DataError

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
TEXT_COLUMNS = ("text", "sentence", "content", "document", "body", "review", "question", "input")
PAIR_COLUMNS = (
    ("prompt", "response"),
    ("prompt", "completion"),
    ("prompt", "chosen"),
    ("instruction", "output"),
    ("instruction", "response"),
    ("question", "answer"),
    ("input", "output"),
    ("query", "response"),
)
LABEL_COLUMNS = ("label", "labels", "class", "category", "intent", "sentiment", "topic", "target")
ID_COLUMNS = ("id", "_id", "uid", "idx")
CHUNK = 4096

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(slots=True)
class Record:
    """One readable row: its position, id, text (prompt and response joined) and label."""

    row: int
    line: int
    id: str
    text: str
    label: str | None = None
    prompt: str | None = None
    response: str | None = None


@dataclass(slots=True)
class Malformed:
    """A row that could not be read as a record, and why."""

    row: int
    line: int
    id: str
    error: str


@dataclass
class Layout:
    """Which columns a file's records are read from."""

    columns: list[str]
    mode: str  # text | pair | messages
    text: str | None = None
    prompt: list[str] = field(default_factory=list)
    response: str | None = None
    label: str | None = None
    id: str | None = None

    @property
    def text_fields(self) -> list[str]:
        """The columns that make up a record's text."""
        if self.mode == "text":
            return [self.text or ""]
        if self.mode == "messages":
            return ["messages"]
        return [*self.prompt, self.response or ""]


@dataclass
class Chunk:
    """Records and malformed rows read together."""

    records: list[Record]
    malformed: list[Malformed]


class Dataset:
    """A data file read in chunks; columns resolved on construction (errors name the file)."""

    def __init__(
        self,
        path: str | Path,
        columns: ColumnSpec | None = None,
        *,
        role: str = "train",
        strict: bool = False,
    ) -> None:
        self.path = Path(path)
        self.spec = columns or ColumnSpec()
        self.role = role
        self.strict = strict
        self.format = _format_of(self.path)
        self.layout = resolve_layout(
            self.path, self.format, self._first_columns(), self.spec, optional=role == "eval"
        )
        self._sha256: str | None = None
        #: ids that appeared more than once in the last full pass (later copies get "#rowN")
        self.duplicate_ids: list[str] = []

    @property
    def name(self) -> str:
        """The file name without its folder."""
        return self.path.name

    def _first_columns(self) -> tuple[list[str], dict[str, Any] | None]:
        """Column names from the header (CSV/TSV/Parquet) or the first object (JSON/JSONL)."""
        if self.format in ("csv", "tsv"):
            if self.spec.names:
                return list(self.spec.names), None
            reader = _table_reader(self.path, self.format)
            try:
                header = next(iter(reader[1]), None)
            except UnicodeDecodeError as e:
                raise decode_error(self.path, e) from e
            finally:
                reader[0].close()
            if not header:
                raise DataError(f"{self.path}: the file is empty (expected a header line)")
            return [h.strip() for h in header], None
        if self.format == "parquet":
            return _parquet_columns(self.path), None
        for raw in self._raw_rows(limit=50):
            if isinstance(raw[2], dict):
                return list(raw[2]), raw[2]
        raise DataError(f"{self.path}: no JSON object found in the first 50 rows")

    # -- raw rows --

    def _raw_rows(self, limit: int | None = None) -> Iterator[tuple[int, int, Any]]:
        """(row, line, object or error string) for every non-blank row."""
        if self.format == "jsonl":
            yield from _jsonl_rows(self.path, limit)
        elif self.format == "json":
            yield from _json_rows(self.path, limit)
        elif self.format in ("csv", "tsv"):
            yield from _table_rows(self.path, self.format, self.spec.names, limit)
        else:
            yield from _parquet_rows(self.path, limit)

    def items(self) -> Iterator[tuple[Any, Record | Malformed]]:
        """Every row as (raw row, record or malformed entry), ids made unique."""
        seen_ids: dict[str, int] = {}
        self.duplicate_ids = []
        for row, line, raw in self._raw_rows():
            item = self._to_record(row, line, raw)
            if isinstance(item, Malformed):
                if self.strict:
                    raise DataError(f"{self.path}:{line}: {item.error}")
            else:
                first = seen_ids.setdefault(item.id, row)
                if first != row:  # a repeated id gets a row suffix so provenance stays exact
                    self.duplicate_ids.append(item.id)
                    item.id = f"{item.id}#row{row}"
            yield raw, item

    def chunks(self, size: int = CHUNK) -> Iterator[Chunk]:
        """The file's records, ``size`` rows at a time."""
        records: list[Record] = []
        malformed: list[Malformed] = []
        for _raw, item in self.items():
            if isinstance(item, Malformed):
                malformed.append(item)
            else:
                records.append(item)
            if len(records) + len(malformed) >= size:
                yield Chunk(records, malformed)
                records, malformed = [], []
        if records or malformed:
            yield Chunk(records, malformed)

    def load(self) -> Chunk:
        """All records and malformed rows at once."""
        records: list[Record] = []
        malformed: list[Malformed] = []
        for chunk in self.chunks():
            records.extend(chunk.records)
            malformed.extend(chunk.malformed)
        if not records and not malformed:
            raise DataError(f"{self.path}: the file has no records")
        return Chunk(records, malformed)

    def count_rows(self) -> int:
        """A quick row count for progress bars (lines for text formats)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(self.path).metadata.num_rows)
        if self.format == "json":
            return 0
        n = 0
        with self.path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                n += block.count(b"\n")
        has_header = self.format in ("csv", "tsv") and not self.spec.names
        return max(n - int(has_header), 0)

    def sha256(self) -> str:
        """Content hash of the file (computed once)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            with self.path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            self._sha256 = h.hexdigest()
        return self._sha256

    # -- records --

    def _to_record(self, row: int, line: int, raw: Any) -> Record | Malformed:
        layout = self.layout
        if isinstance(raw, str):
            return Malformed(row, line, str(row), raw)
        if not isinstance(raw, dict):
            return Malformed(row, line, str(row), f"expected an object, got {_kind(raw)}")
        rid = str(row)
        if layout.id is not None:
            value = raw.get(layout.id)
            if value is None or str(value) == "":
                return Malformed(row, line, rid, f"id column '{layout.id}' is missing or empty")
            rid = str(value)
        try:
            text, prompt, response = _record_text(layout, raw)
        except ValueError as e:
            return Malformed(row, line, rid, str(e))
        label = None
        if layout.label is not None:
            value = raw.get(layout.label)
            if isinstance(value, list | dict):
                return Malformed(
                    row, line, rid, f"label column '{layout.label}' holds {_kind(value)}"
                )
            label = None if value is None or str(value).strip() == "" else str(value)
        return Record(row, line, rid, text, label, prompt, response)


def _record_text(layout: Layout, raw: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(text, prompt, response) of a raw row; ValueError names a missing or non-text field."""
    if layout.mode == "text":
        text = _field_text(raw, layout.text or "")
        return text, None, None
    if layout.mode == "messages":
        return _messages_text(raw.get("messages"))
    parts = [_field_text(raw, name, optional=i > 0) for i, name in enumerate(layout.prompt)]
    prompt = "\n".join(p for p in parts if p)
    response = _field_text(raw, layout.response or "")
    return f"{prompt}\n{response}" if prompt and response else prompt or response, prompt, response


def _field_text(raw: dict[str, Any], name: str, optional: bool = False) -> str:
    if name not in raw:
        if optional:
            return ""
        raise ValueError(f"column '{name}' is missing")
    value = raw[name]
    if value is None:
        return ""
    if isinstance(value, list | dict):
        raise ValueError(f"column '{name}' holds {_kind(value)}, expected text")
    return str(value)


def _messages_text(messages: Any) -> tuple[str, str, str]:
    """A chat: the last assistant turn is the response, the turns before it the prompt."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError("column 'messages' must hold a list of {role, content} objects")
    turns = [(str(m.get("role", "")), str(m.get("content") or "")) for m in messages]
    last = max((i for i, (role, _c) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        prompt = "\n".join(c for _r, c in turns)
        return prompt, prompt, ""
    prompt = "\n".join(c for _r, c in turns[:last])
    response = turns[last][1]
    return f"{prompt}\n{response}" if prompt else response, prompt, response


# --------------------------------------------------------------------------- layout


def resolve_layout(
    path: Path,
    fmt: str,
    first: tuple[list[str], dict[str, Any] | None],
    spec: ColumnSpec,
    optional: bool = False,
) -> Layout:
    """Which columns hold the text, label and id; DataError when a named one is absent (with
    ``optional``, for eval files, a named label or id column may be absent)."""
    columns, sample = first
    present = set(columns)

    def need(name: str, option: str) -> str:
        if name not in present:
            raise DataError(
                f"{path}: column '{name}' ({option}) is not in the file (columns: "
                f"{_names(columns)}){_headerless_hint(fmt, columns, spec)}"
            )
        return name

    layout = Layout(columns=columns, mode="text")
    if spec.text is not None:
        layout.text = need(spec.text, "--text-column")
    elif spec.prompt is not None or spec.response is not None:
        if spec.prompt is None or spec.response is None:
            raise DataError(
                f"{path}: prompt/response pairs need both --prompt-column and --response-column"
            )
        layout.mode = "pair"
        layout.prompt = [need(spec.prompt, "--prompt-column")]
        layout.response = need(spec.response, "--response-column")
    else:
        _auto_text(path, fmt, layout, present, sample, spec)
    if spec.label is not None:
        skip = optional and spec.label not in present
        layout.label = None if skip else need(spec.label, "--label-column")
    else:
        used = {layout.text, layout.response, *layout.prompt}
        layout.label = next((c for c in LABEL_COLUMNS if c in present and c not in used), None)
    if spec.id is not None:
        layout.id = None if optional and spec.id not in present else need(spec.id, "--id-column")
    else:
        layout.id = next((c for c in ID_COLUMNS if c in present), None)
    return layout


def _auto_text(
    path: Path,
    fmt: str,
    layout: Layout,
    present: set[str],
    sample: dict[str, Any] | None,
    spec: ColumnSpec,
) -> None:
    if "messages" in present and (sample is None or isinstance(sample.get("messages"), list)):
        layout.mode = "messages"
        return
    for prompt, response in PAIR_COLUMNS:
        if prompt in present and response in present:
            layout.mode = "pair"
            layout.prompt = [prompt]
            if prompt == "instruction" and "input" in present:
                layout.prompt.append("input")
            layout.response = response
            return
    text = next((c for c in TEXT_COLUMNS if c in present), None)
    if text is None:
        raise DataError(
            f"{path}: no text column found (columns: {_names(layout.columns)}); name it with "
            "--text-column, or --prompt-column and --response-column for pairs"
            f"{_headerless_hint(fmt, layout.columns, spec)}"
        )
    layout.text = text


def _headerless_hint(fmt: str, columns: list[str], spec: ColumnSpec) -> str:
    if fmt not in ("csv", "tsv") or spec.names:
        return ""
    if any(len(c) > 40 or " " in c.strip() for c in columns):
        return (
            "; the first line looks like data, not a header: name the columns with "
            f"--columns {','.join(['text', 'label'][: len(columns)] or ['text'])}"
        )
    return ""


def _names(columns: list[str]) -> str:
    shown = [c if len(c) <= 40 else c[:37] + "..." for c in columns[:12]]
    more = f", ... ({len(columns)} in all)" if len(columns) > 12 else ""
    return ", ".join(repr(c) for c in shown) + more if columns else "(none)"


def _format_of(path: Path) -> str:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a data file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: unsupported file type {path.suffix!r} (expected one of {', '.join(FORMATS)})"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return fmt


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"{type(value).__name__} {value!r}"[:60]


# --------------------------------------------------------------------------- readers


def _jsonl_rows(path: Path, limit: int | None) -> Iterator[tuple[int, int, Any]]:
    row = 0
    with _open_text(path) as fh:
        for lineno, line in _lines(path, fh):
            if not line.strip():
                continue
            if limit is not None and row >= limit:
                return
            try:
                obj: Any = json.loads(line)
            except json.JSONDecodeError as e:
                obj = f"invalid JSON: {e.msg} (column {e.colno})"
            yield row, lineno, obj
            row += 1
    if row == 0 and limit is None:
        raise DataError(f"{path}: the file has no records (only blank lines)")


def _json_rows(path: Path, limit: int | None) -> Iterator[tuple[int, int, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise decode_error(path, e) from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(f'{path}: expected a JSON list of objects or {{"data": [...]}}')
    for row, obj in enumerate(data[:limit] if limit is not None else data):
        yield row, row + 1, obj


def _open_text(path: Path) -> Any:
    return path.open(encoding="utf-8-sig", newline="")


def decode_error(path: Path, err: UnicodeDecodeError) -> DataError:
    """A DataError naming the first line of ``path`` that is not UTF-8 (found by rescanning:
    the decoder reads ahead in blocks, so the line it was on is not the line at fault)."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return DataError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start} of the line)"
                )
    return DataError(f"{path}: not UTF-8 text ({err.reason})")


def _lines(path: Path, fh: Any) -> Iterator[tuple[int, str]]:
    """Numbered lines; a decoding error names the line at fault."""
    try:
        yield from enumerate(fh, start=1)
    except UnicodeDecodeError as e:
        raise decode_error(path, e) from e


def _table_reader(path: Path, fmt: str) -> tuple[Any, Any]:
    fh = _open_text(path)
    if fmt == "tsv":
        return fh, csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
    return fh, csv.reader(fh)


def _table_rows(
    path: Path, fmt: str, names: list[str] | None, limit: int | None
) -> Iterator[tuple[int, int, Any]]:
    fh, reader = _table_reader(path, fmt)
    row = 0
    try:
        header = list(names) if names else None
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as e:
                raise decode_error(path, e) from e
            except csv.Error as e:
                yield row, reader.line_num, f"unreadable row: {e}"
                row += 1
                continue
            if header is None:
                header = [c.strip() for c in cells]
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if limit is not None and row >= limit:
                break
            if len(cells) != len(header):
                yield (
                    row,
                    reader.line_num,
                    (
                        f"expected {len(header)} {'tab' if fmt == 'tsv' else 'comma'}-separated "
                        f"fields, found {len(cells)}"
                    ),
                )
            else:
                yield row, reader.line_num, dict(zip(header, cells, strict=True))
            row += 1
    finally:
        fh.close()


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read the parquet file: {e}") from e


def _parquet_rows(path: Path, limit: int | None) -> Iterator[tuple[int, int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
            for obj in batch.to_pylist():
                if limit is not None and row >= limit:
                    return
                yield row, row + 1, obj
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read the parquet file near row {row}: {e}") from e
