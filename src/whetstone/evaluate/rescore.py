"""`rescore`: recompute a stored run's metrics from its outputs, as a new run.

The task files give the metric definitions (a new metric in `metrics:`, or the definitions of a
newer whetstone); the run gives the outputs. Each item's prompt is rebuilt from the task file and
must equal the one the run stored (a chat-template run must contain it), so a changed template
or data is caught instead of scored against outputs of other prompts. The new run records the
run its outputs came from (`config.rescored_from`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from whetstone.errors import DataError
from whetstone.evaluate.cache import CachedModel
from whetstone.evaluate.engine import (
    Evaluation,
    PreparedTask,
    Reporter,
    package_versions,
    prepare_tasks,
    run_tasks,
)
from whetstone.evaluate.kinds import TaskContext
from whetstone.evaluate.replay import replay_model
from whetstone.models.base import LabelScorer
from whetstone.records import SampleRecord
from whetstone.store import RunRow, Store
from whetstone.tasks.prompts import build_prompt, input_text

#: Config key of a rescored run that names the run its outputs came from.
SOURCE_KEY = "rescored_from"


def _stored_prompts(
    p: PreparedTask, stored: dict[str, SampleRecord], chat: bool, classifier: bool
) -> Callable[[str], str]:
    """The prompt wrapper that maps each item's rebuilt prompt to the one the run stored,
    after checking that the two agree."""
    mapping: dict[str, str] = {}
    for item in p.items:
        if p.config.kind == "perplexity":
            rebuilt = str(item[p.config.text])
        elif classifier:
            rebuilt = input_text(p.config, item)
        else:
            rebuilt = build_prompt(p.config, item, p.pool)
        saved = stored[str(item["_id"])].prompt
        agrees = rebuilt in saved if chat and not classifier else rebuilt == saved
        if not agrees:
            raise DataError(
                f"rescore: task {p.config.name}, item {item['_id']}: the prompt built from the "
                "task file differs from the one the run stored (the template, few-shot examples "
                "or data changed since): evaluate again instead"
            )
        mapping[rebuilt] = saved
    return lambda text: mapping.get(text, text)


def _select_items(p: PreparedTask, stored: dict[str, SampleRecord], run_id: str) -> PreparedTask:
    """The task with exactly the items the run answered, in the task's order."""
    known = {str(item["_id"]) for item in p.items}
    missing = [i for i in stored if i not in known]
    if missing:
        raise DataError(
            f"rescore: task {p.config.name}: {len(missing)} item(s) of run {run_id} are not in "
            f"the task's data (first: {missing[0]!r})"
        )
    items = [item for item in p.items if str(item["_id"]) in stored]
    return PreparedTask(p.config, items, p.pool, p.hash)


def rescore(
    run: str,
    tasks: Sequence[str | Path],
    *,
    db: Store | str | None = None,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
) -> tuple[Evaluation, list[str]]:
    """Score run `run`'s stored outputs with the metrics of `tasks` into a new stored run.

    Returns the new run and notes (tasks of the run that no file gave, so not rescored). Raises
    DataError (nothing stored) when a task is not in the run, an item is not in the task's data
    or a prompt differs from the stored one.
    """
    store = db if isinstance(db, Store) else Store(db)
    row = store.get_run(run)
    assert row is not None
    prepared = prepare_tasks(tasks)
    by_task = _samples_by_task(store, row)
    absent = [p.config.name for p in prepared if p.config.name not in by_task]
    if absent:
        raise DataError(
            f"rescore: run {row.run_id} has no outputs for task(s) {', '.join(absent)} "
            f"(its tasks: {', '.join(by_task) or 'none'})"
        )
    prepared = [_select_items(p, by_task[p.config.name], row.run_id) for p in prepared]
    notes = [
        f"task {name} of run {row.run_id} was not rescored: no task file gave it"
        for name in by_task
        if name not in {p.config.name for p in prepared}
    ]
    seed = row.seed if seed is None else seed
    chat = bool(row.config.get("chat_template"))
    contexts = {
        p.config.name: _replay_context(p, by_task[p.config.name], row, chat, seed, reporter)
        for p in prepared
    }
    config: dict[str, Any] = {
        "model": row.config.get("model", row.model.name),
        "tasks": {p.config.name: p.hash for p in prepared},
        "seed": seed,
        "chat_template": chat,
        SOURCE_KEY: row.run_id,
    }
    if "repeats" in row.config:
        config["repeats"] = row.config["repeats"]
    run_id = uuid.uuid4().hex[:12]
    hashes = dict(config["tasks"])
    store.create_run(run_id, row.model, config, hashes, package_versions(), seed)
    try:
        result, samples = run_tasks(
            prepared, lambda p: contexts[p.config.name], store, run_id, config, out_dir, reporter
        )
    except BaseException:
        store.delete_run(run_id)
        raise
    return Evaluation(result, samples, 0, sum(len(p.items) for p in prepared)), notes


def _samples_by_task(store: Store, row: RunRow) -> dict[str, dict[str, SampleRecord]]:
    """The run's samples by task and item id."""
    out: dict[str, dict[str, SampleRecord]] = {}
    for s in store.get_samples(row.run_id):
        out.setdefault(s.task, {})[s.id] = s
    if not out:
        raise DataError(f"rescore: run {row.run_id} has no stored outputs")
    return out


def _replay_context(
    p: PreparedTask,
    stored: dict[str, SampleRecord],
    row: RunRow,
    chat: bool,
    seed: int,
    reporter: Reporter | None,
) -> TaskContext:
    """The scorer context of one task: the replay backend and the stored-prompt wrapper."""
    model = replay_model(row.model, p.config, list(stored.values()))
    classifier = isinstance(model, LabelScorer)
    wrap = _stored_prompts(p, stored, chat, classifier)
    progress = reporter.advance if reporter else None
    repeats = int(row.config.get("repeats", 1))
    return TaskContext(CachedModel(model, None), seed, wrap, progress, repeats)
