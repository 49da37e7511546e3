"""Export a campaign's judgments as JSONL or CSV (the same records as ``judgments()``)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from whetstone.errors import WhetstoneError
from whetstone.records import FeedbackJudgment
from whetstone.store import Store

ExportFormat = Literal["jsonl", "csv"]
FIELDS = [*FeedbackJudgment.model_fields, "is_failure"]
"""CSV columns: every FeedbackJudgment field, then is_failure; tags joined by ';'."""


def _row(j: FeedbackJudgment) -> dict[str, object]:
    """A judgment as a flat JSON object (with is_failure)."""
    return {**j.model_dump(mode="json"), "is_failure": j.is_failure}


def to_jsonl(records: Sequence[FeedbackJudgment]) -> str:
    """One JSON object per line."""
    return "".join(json.dumps(_row(j), ensure_ascii=False) + "\n" for j in records)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection)."""


def safe_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, quoted with a leading ``'``;
    numbers and other text unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def to_csv(records: Sequence[FeedbackJudgment]) -> str:
    """A CSV table with a header; empty cells for unanswered questions, and text that would
    start a spreadsheet formula quoted (see `safe_cell`)."""
    buffer = io.StringIO()
    # CRLF rows (RFC 4180): a cell holding \r or \n is then quoted, so it cannot split a row
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\r\n")
    writer.writeheader()
    for j in records:
        row = _row(j)
        row["tags"] = ";".join(j.tags)
        writer.writerow({k: "" if v is None else safe_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def render(records: Sequence[FeedbackJudgment], fmt: ExportFormat) -> str:
    """The records in the chosen format."""
    if fmt == "jsonl":
        return to_jsonl(records)
    if fmt == "csv":
        return to_csv(records)
    raise WhetstoneError(f"unknown export format {fmt!r}; expected jsonl or csv")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so no half-written file remains."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_judgments(
    store: Store, campaign_id: str, path: str | Path, fmt: ExportFormat | None = None
) -> int:
    """Write the campaign's judgments to ``path`` (format from the suffix unless given);
    returns the number of records."""
    from whetstone.feedback.judgments import judgments

    path = Path(path)
    chosen = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    records = judgments(store, campaign_id)
    write_atomic(path, render(records, chosen))
    return len(records)
