"""Two runs item by item: which items a candidate fixed, broke or changed, for one HTML page.

Each paired item gets a status from its task's key per-item metric (the registry's 0/1
correctness metric when the task has one, else its first headline or registered metric):
``fixed``/``broken`` when a 0/1 metric flips, ``better``/``worse`` when a continuous one moves,
``changed`` when the key metric holds but the output or another metric moved, ``same``
otherwise. The page holds the items as compact JSON and draws one page of rows at a time, so a
comparison of 100,000 items stays usable in a browser.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from whetstone.metrics import headline_metrics, higher_is_better, is_known, metric_spec
from whetstone.records import SampleRecord
from whetstone.report.samples import by_task, display_gold, display_prediction

STATUSES = ("fixed", "broken", "better", "worse", "changed", "same")
STATUS_HELP = (
    "Fixed and broken: a 0/1 metric (accuracy, exact match) went from wrong to right or back. "
    "Better and worse: a continuous metric (bits per byte, token F1) moved. Changed: that "
    "metric held, but the answer or another metric moved. Each task's first metric decides."
)
#: Longer prompts are kept by their end (the item; few-shot examples come first).
PROMPT_CHARS = 1500
#: Longer outputs and references are cut, with a mark.
TEXT_CHARS = 2000
#: A data column with more distinct values than this in a task is not offered as a slice.
MAX_SLICE_VALUES = 30
_BOOKKEEPING = ("logprob", "n_tokens", "n_words", "n_bytes")


@dataclass
class ItemComparison:
    """The paired items of two runs with their statuses, ready for the page."""

    metrics: dict[str, list[str]]  # task -> per-item metrics shown (key metric first)
    rows: list[list[Any]]  # one compact row per item (see ``_row``)
    slices: list[str]  # "column=value" labels the rows point at
    counts: dict[str, Counter[str]]  # task -> status -> items
    only: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (only A, only B)

    @property
    def total(self) -> Counter[str]:
        """Items per status over every task."""
        out: Counter[str] = Counter()
        for c in self.counts.values():
            out.update(c)
        return out


def key_metric(samples: Sequence[SampleRecord]) -> str | None:
    """The per-item metric that decides an item's status in these samples."""
    present = [k for k in samples[0].metrics if k not in _BOOKKEEPING] if samples else []
    known = [k for k in present if is_known(k)]
    for pick in (
        [
            k
            for k in known
            if metric_spec(k).aggregation == "proportion" and k in headline_metrics()
        ],
        [k for k in known if metric_spec(k).aggregation == "proportion"],
        [k for k in known if k in headline_metrics()],
        known,
        present,
    ):
        if pick:
            return pick[0]
    return None


def _same(x: float | None, y: float | None) -> bool:
    if x is None or y is None:
        return x is y
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def item_status(a: SampleRecord, b: SampleRecord, key: str | None) -> str:
    """fixed, broken, better, worse, changed or same (B against A)."""
    if key is not None and not _same(a.metrics.get(key), b.metrics.get(key)):
        x, y = float(a.metrics[key]), float(b.metrics[key])
        improved = (y > x) == higher_is_better(key)
        binary = (
            {x, y} <= {0.0, 1.0}
            and is_known(key)
            and (metric_spec(key).aggregation == "proportion")
        )
        if binary:
            return "fixed" if improved else "broken"
        return "better" if improved else "worse"
    moved = any(not _same(v, b.metrics.get(k)) for k, v in a.metrics.items())
    if moved or display_prediction(a) != display_prediction(b):
        return "changed"
    return "same"


def _cut(text: str, limit: int, tail: bool = False) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if tail else text[:limit] + "…"


def _number(x: float | None) -> float | None:
    """A JSON-safe value (NaN and infinities as null)."""
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _slice_labels(
    task: str,
    samples: Sequence[SampleRecord],
    columns: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, list[str]]:
    """Item id -> its "column=value" slice labels: the task data's categorical columns, and
    the gold answer when it takes few values."""
    values: dict[str, dict[str, str]] = {s.id: {} for s in samples}
    data = columns.get(task, {})
    for s in samples:
        for col, v in data.get(s.id, {}).items():
            if isinstance(v, str | int | bool):
                values[s.id][col] = str(v)
        values[s.id].setdefault("gold", display_gold(s))
    keep = {
        col
        for col in {c for v in values.values() for c in v}
        if 1 < len({v.get(col) for v in values.values()}) <= MAX_SLICE_VALUES
    }
    return {i: [f"{c}={v[c]}" for c in sorted(keep) if c in v] for i, v in values.items()}


def compare_items(
    samples_a: Sequence[SampleRecord],
    samples_b: Sequence[SampleRecord],
    *,
    columns: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    keep_same: bool = False,
) -> ItemComparison:
    """Pair the items of two runs by (task, id) and give each a status; `columns` (task ->
    item id -> data columns, from the task files) adds slices. Unchanged items are counted
    and, unless `keep_same`, left off the rows."""
    index = {(s.task, s.id): s for s in samples_b}
    slice_ids: dict[str, int] = {}
    out = ItemComparison(metrics={}, rows=[], slices=[], counts={})
    tasks_b = by_task(list(samples_b))
    for t, (task, items) in enumerate(by_task(list(samples_a)).items()):
        pairs = [(a, index[(task, a.id)]) for a in items if (task, a.id) in index]
        out.only[task] = (len(items) - len(pairs), len(tasks_b.get(task, [])) - len(pairs))
        key = key_metric(items)
        names = [k for k in items[0].metrics if k not in _BOOKKEEPING] if items else []
        names = ([key] if key else []) + [k for k in names if k != key]
        out.metrics[task] = names
        labels = _slice_labels(task, [a for a, _ in pairs], columns or {})
        counts: Counter[str] = Counter()
        for a, b in pairs:
            status = item_status(a, b, key)
            counts[status] += 1
            if status == "same" and not keep_same:
                continue
            codes = [slice_ids.setdefault(label, len(slice_ids)) for label in labels[a.id]]
            out.rows.append(_row(t, a, b, STATUSES.index(status), names, codes))
        out.counts[task] = counts
    out.slices = list(slice_ids)
    return out


def _row(
    task: int,
    a: SampleRecord,
    b: SampleRecord,
    status: int,
    names: Sequence[str],
    slices: list[int],
) -> list[Any]:
    """[task, id, status, prompt, gold, output A, output B, metrics A, metrics B, slices]."""
    return [
        task,
        a.id,
        status,
        _cut(a.prompt, PROMPT_CHARS, tail=True),
        _cut(display_gold(a), TEXT_CHARS),
        _cut(display_prediction(a), TEXT_CHARS),
        _cut(display_prediction(b), TEXT_CHARS),
        [_number(a.metrics.get(k)) for k in names],
        [_number(b.metrics.get(k)) for k in names],
        slices,
    ]


def page_data(items: ItemComparison) -> str:
    """The items as JSON that is safe inside a <script> element."""
    payload = {
        "tasks": list(items.metrics),
        "metrics": list(items.metrics.values()),
        "higher": {
            k: higher_is_better(k) for names in items.metrics.values() for k in names if is_known(k)
        },
        "statuses": STATUSES,
        "slices": items.slices,
        "rows": items.rows,
    }
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
