"""The cleaned copy of the training data, per-example weights and the list of removed rows.

The copy keeps the input's format and columns (JSONL, JSON, CSV, TSV or Parquet) and leaves out
the rows named by ``clean.drop`` (duplicates, conflicting copies, records that contain eval
items, empty records, likely label errors) and every malformed row; with ``redact_pii`` the
personal data in text fields is replaced by placeholders. ``weights.jsonl`` holds one weight per
kept record (balanced class weights computed on the kept records), ``removed.jsonl`` every row
left out and why. All three are written atomically.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from whetstone.audit.files import atomic_path
from whetstone.audit.labels import balanced_weights
from whetstone.audit.loading import Dataset, Layout, Malformed
from whetstone.audit.pii import find_pii, redact
from whetstone.audit.schema import Audit, Outputs


def drop_reasons(result: Audit) -> dict[str, list[str]]:
    """Record id -> why the cleaned copy leaves it out (per the clean.drop setting)."""
    drop = set(result.config.clean.drop)
    reasons: dict[str, list[str]] = {}

    def mark(ids: Iterable[str], why: str) -> None:
        for i in ids:
            reasons.setdefault(i, []).append(why)

    dups = result.duplicates
    if dups is not None:
        conflicted = {i for g in dups.conflicts if g.kind == "exact" for i in g.ids}
        exact_extra = {i for g in dups.exact_groups for i in g.ids[1:]} - conflicted
        for i in dups.drop_ids:
            why = (
                "conflicts"
                if i in conflicted
                else "exact_duplicates"
                if i in exact_extra
                else "near_duplicates"
            )
            if why in drop:
                mark([i], why)
    if "contaminated" in drop:
        mark(sorted({i for s in result.contamination for i in s.train_ids}), "contaminated")
    if "empty" in drop and result.stats is not None:
        mark(result.stats.empty_ids, "empty")
    if "label_issues" in drop and result.label_issues is not None:
        mark([i.id for i in result.label_issues.issues], "label_issues")
    return reasons


def write_cleaned(
    ds: Dataset, result: Audit, out: Path, advance: Callable[[int], None] | None = None
) -> Outputs:
    """Write ``cleaned.<ext>``, ``weights.jsonl`` and ``removed.jsonl`` into ``out``."""
    cfg = result.config
    reasons = drop_reasons(result)
    kinds: list[str] = list(cfg.pii.kinds) if cfg.clean.redact_pii else []
    kept: list[tuple[str, str | None]] = []
    removed: list[dict[str, Any]] = []

    def rows() -> Iterator[Any]:
        for n, (raw, item) in enumerate(ds.items(), start=1):
            if advance is not None and n % 1000 == 0:
                advance(1000)
            if isinstance(item, Malformed):
                removed.append({"id": item.id, "line": item.line, "reasons": ["malformed"]})
                continue
            if item.id in reasons:
                removed.append({"id": item.id, "line": item.line, "reasons": reasons[item.id]})
                continue
            kept.append((item.id, item.label))
            yield _redacted(raw, ds.layout, kinds) if kinds else raw

    suffix = ".jsonl" if ds.format == "jsonl" else f".{ds.format}"
    cleaned = out / f"cleaned{suffix}"
    _WRITERS[ds.format](cleaned, rows(), ds)
    weights = _weights(kept, cfg.clean.weights)
    with atomic_path(out / "weights.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
        for (rid, _label), w in zip(kept, weights, strict=True):
            fh.write(json.dumps({"id": rid, "weight": round(w, 6)}) + "\n")
    with atomic_path(out / "removed.jsonl") as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in removed:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Outputs(
        cleaned=str(cleaned),
        weights=str(out / "weights.jsonl"),
        removed=str(out / "removed.jsonl"),
        n_kept=len(kept),
        n_removed=len(removed),
    )


def _weights(kept: list[tuple[str, str | None]], scheme: str) -> list[float]:
    counts = Counter(label for _id, label in kept if label is not None)
    if scheme == "none" or not counts:
        return [1.0] * len(kept)
    per_class = balanced_weights(dict(counts))
    return [per_class[label] if label is not None else 1.0 for _id, label in kept]


def _redacted(raw: dict[str, Any], layout: Layout, kinds: Sequence[str]) -> dict[str, Any]:
    """A copy of the raw row with personal data replaced in its text fields."""
    row = dict(raw)
    if layout.mode == "messages" and isinstance(row.get("messages"), list):
        row["messages"] = [
            {**m, "content": _redact_text(m.get("content"), kinds)} if isinstance(m, dict) else m
            for m in row["messages"]
        ]
        return row
    for name in layout.text_fields:
        if isinstance(row.get(name), str):
            row[name] = _redact_text(row[name], kinds)
    return row


def _redact_text(value: Any, kinds: Sequence[str]) -> Any:
    if not isinstance(value, str):
        return value
    matches = find_pii(value, kinds)
    return redact(value, matches) if matches else value


def _write_jsonl(path: Path, rows: Iterator[Any], ds: Dataset) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_json(path: Path, rows: Iterator[Any], ds: Dataset) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        json.dump(list(rows), fh, ensure_ascii=False, indent=1)


def _write_table(path: Path, rows: Iterator[Any], ds: Dataset) -> None:
    columns = ds.layout.columns
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as fh:
        if ds.format == "tsv":
            _write_tsv(fh, rows, columns, header=not ds.spec.names)
            return
        writer = csv.writer(fh)
        if not ds.spec.names:
            writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])


def _write_tsv(fh: TextIO, rows: Iterator[Any], columns: list[str], header: bool) -> None:
    """Tab-separated without quoting, as the input was read (fields hold no tabs)."""
    if header:
        fh.write("\t".join(columns) + "\n")
    for row in rows:
        fh.write("\t".join(str(row.get(c, "")) for c in columns) + "\n")


def _write_parquet(path: Path, rows: Iterator[Any], ds: Dataset) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(ds.path).schema_arrow
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= 4096:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))


_WRITERS: dict[str, Callable[[Path, Iterator[Any], Dataset], None]] = {
    "jsonl": _write_jsonl,
    "json": _write_json,
    "csv": _write_table,
    "tsv": _write_table,
    "parquet": _write_parquet,
}
