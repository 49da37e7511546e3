"""An evaluation run's per-item scores, matched to the items of an eval file by id."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from whetstone.errors import DataError, WhetstoneError
from whetstone.records import SampleRecord

#: Metrics tried, in order, when none is named (the first that every sample has wins).
PREFERRED_METRICS = ("acc", "accuracy", "exact_match", "acc_norm", "token_f1", "f1", "rouge_l")


def load_run(run: str | Path, store: Any = None) -> tuple[str, list[SampleRecord]]:
    """(run id, samples) from a run folder, a samples.jsonl file, or a run id in the store
    (a Store, a database URL, or None for the default database)."""
    path = Path(run)
    if path.exists():
        return _from_path(path)
    from whetstone.store import Store

    db = store if isinstance(store, Store) else Store(store)
    run_id = db.resolve_run_id(str(run))
    if run_id is None:
        raise WhetstoneError(
            f"run {run!r}: not a folder or samples.jsonl file, and no stored run has that id"
        )
    samples = db.get_samples(run_id)
    if not samples:
        raise DataError(f"run {run_id}: has no samples")
    return run_id, samples


def _from_path(path: Path) -> tuple[str, list[SampleRecord]]:
    folder = path if path.is_dir() else path.parent
    samples_path = path / "samples.jsonl" if path.is_dir() else path
    if not samples_path.is_file():
        raise DataError(f"{path}: no samples.jsonl (expected a `whetstone evaluate --out` folder)")
    samples: list[SampleRecord] = []
    with samples_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                samples.append(SampleRecord.model_validate_json(line))
            except ValidationError as e:
                err = e.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise DataError(
                    f"{samples_path}:{lineno}: not a sample record ({where or 'line'}: "
                    f"{err['msg']})"
                ) from e
    if not samples:
        raise DataError(f"{samples_path}: has no samples")
    run_id = folder.name
    results = folder / "results.json"
    if results.is_file():
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            run_id = str(json.loads(results.read_text(encoding="utf-8")).get("run_id", run_id))
    return run_id, samples


def match_scores(
    samples: Sequence[SampleRecord],
    eval_ids: Sequence[str],
    task: str | None = None,
    metric: str | None = None,
) -> tuple[str, str, dict[str, float]] | None:
    """(task, metric, value per eval id) for the run's task that shares the most ids with the
    eval file (or the named task); None when no task shares any id."""
    by_task: dict[str, list[SampleRecord]] = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    if task is not None and task not in by_task:
        raise WhetstoneError(f"the run has no task {task!r} (tasks: {', '.join(sorted(by_task))})")
    wanted = set(eval_ids)
    overlap = {name: sum(s.id in wanted for s in rows) for name, rows in by_task.items()}
    name = task or max(sorted(overlap), key=lambda n: overlap[n])
    if overlap[name] == 0:
        return None
    rows = [s for s in by_task[name] if s.id in wanted]
    chosen = metric or next(
        (m for m in PREFERRED_METRICS if all(m in s.metrics for s in rows)), None
    )
    if chosen is None or not all(chosen in s.metrics for s in rows):
        available = sorted(set.intersection(*(set(s.metrics) for s in rows)))
        raise WhetstoneError(
            f"task {name!r} of the run has no per-item metric {metric or 'to compare'!r} "
            f"(available: {', '.join(available) or 'none'}); choose one with --metric"
        )
    return name, chosen, {s.id: float(s.metrics[chosen]) for s in rows}
