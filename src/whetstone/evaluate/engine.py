"""`evaluate`: run tasks on a model, with the response cache, the store and output files."""

from __future__ import annotations

import contextlib
import platform
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from whetstone.errors import ConfigError, ModelError, WhetstoneError
from whetstone.evaluate.executor import Executor, LocalExecutor
from whetstone.evaluate.kinds import SCORERS, TaskContext, repeats_of, request_count
from whetstone.evaluate.outputs import write_outputs
from whetstone.models import LanguageModel
from whetstone.records import RunResult, SampleRecord, TaskResult
from whetstone.store import Store, config_hash
from whetstone.tasks.loading import load_fewshot, load_items, load_tasks, task_hash
from whetstone.tasks.schema import TaskConfig


class Reporter(Protocol):
    """Receives progress while a run goes on (the CLI draws a progress bar with it)."""

    def task_started(self, name: str, total: int) -> None:
        """A task begins; `total` requests will be answered."""

    def advance(self, n: int) -> None:
        """`n` more requests of the current task are answered."""

    def task_finished(self, name: str, result: TaskResult) -> None:
        """A task is done."""


@dataclass
class PreparedTask:
    """A task with its items, few-shot pool and content hash, checked before any model call."""

    config: TaskConfig
    items: list[dict[str, Any]]
    pool: list[dict[str, Any]]
    hash: str


@dataclass
class Evaluation:
    """A finished run and its samples, plus how many requests came from the cache."""

    result: RunResult
    samples: list[SampleRecord] = field(default_factory=list)
    computed: int = 0
    reused: int = 0


def prepare_tasks(
    tasks: Sequence[TaskConfig | str | Path], limit: int | None = None
) -> list[PreparedTask]:
    """Load task files and their data; every input error surfaces here, before any work."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: expected at least 1 item per task")
    configs: list[TaskConfig] = []
    for t in tasks:
        configs += [t] if isinstance(t, TaskConfig) else load_tasks(t)
    if not configs:
        raise ConfigError("no task given: pass at least one task file")
    seen: set[str] = set()
    for c in configs:
        if c.name in seen:
            raise ConfigError(f"task name '{c.name}' appears twice: task names must be unique")
        seen.add(c.name)
    return [PreparedTask(c, load_items(c, limit), load_fewshot(c), task_hash(c)) for c in configs]


def check_repeats(
    prepared: Sequence[PreparedTask], repeats: int, option: str = "--repeats"
) -> None:
    """Refuse repeats that would sample nothing new (every output would be the same)."""
    if repeats < 1:
        raise ConfigError(f"{option} {repeats}: expected at least 1")
    if repeats > 1 and not any(repeats_of(p.config, repeats) > 1 for p in prepared):
        raise ConfigError(
            f"{option} {repeats}: no task samples (repeats apply to generation tasks with "
            "temperature > 0; greedy decoding gives the same output every time)"
        )


def package_versions() -> dict[str, str]:
    """Versions of whetstone and of the packages that change its numbers."""
    versions = {"python": platform.python_version()}
    for name in ("whetstone", "torch", "transformers", "numpy", "scipy", "sacrebleu"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _wrapper(model: LanguageModel, chat_template: bool) -> Callable[[str], str]:
    if not chat_template:
        return lambda text: text
    if not model.has_chat_template:
        raise ModelError(f"--chat-template: model '{model.identity.name}' has no chat template")
    return lambda text: model.chat_prompt([{"role": "user", "content": text}])


def evaluate(
    model: LanguageModel | str,
    tasks: Sequence[TaskConfig | str | Path],
    *,
    limit: int | None = None,
    seed: int = 0,
    db: Store | str | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    use_cache: bool = True,
    chat_template: bool = False,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
    repeats: int = 1,
    **model_options: Any,
) -> Evaluation:
    """Evaluate `model` on `tasks` and return the run; stores it and writes files when asked.

    `model` is a loaded backend or a spec for `load_model` (with `model_options` such as
    device, dtype, batch_size, base_url). Input errors are raised before anything is stored.
    `executor` computes the model requests: this process by default, or Ray workers
    (`whetstone.scale`); the results are the same. `repeats` K > 1 samples K outputs per item
    of the generation tasks that sample (temperature > 0), each with its own seed.
    """
    prepared = prepare_tasks(tasks, limit)
    check_repeats(prepared, repeats)
    store = db if isinstance(db, Store) else Store(db)
    runner = executor or LocalExecutor()
    try:
        lm = runner.load(model, model_options)
        wrap = _wrapper(lm, chat_template)
        task_hashes = {p.config.name: p.hash for p in prepared}
        config = {
            "model": model if isinstance(model, str) else lm.identity.name,
            "tasks": task_hashes,
            "limit": limit,
            "seed": seed,
            "chat_template": chat_template,
        }
        if repeats > 1:
            config["repeats"] = repeats
        key = config_hash(config)
        run_id = store.find_unfinished_run(lm.identity.key, key) if resume else None
        if run_id is None:
            run_id = uuid.uuid4().hex[:12]
            store.create_run(run_id, lm.identity, config, task_hashes, package_versions(), seed)
        cached = runner.cached_model(lm, store if use_cache else None)
        ctx = TaskContext(cached, seed, wrap, reporter.advance if reporter else None, repeats)
        try:
            run, samples = run_tasks(
                prepared, lambda _: ctx, store, run_id, config, out_dir, reporter
            )
        except WhetstoneError:
            store.delete_run(run_id)
            raise
        return Evaluation(run, samples, cached.computed, cached.reused)
    finally:
        runner.close()


def run_tasks(
    prepared: list[PreparedTask],
    context: Callable[[PreparedTask], TaskContext],
    store: Store,
    run_id: str,
    config: dict[str, Any],
    out_dir: str | Path | None,
    reporter: Reporter | None,
) -> tuple[RunResult, list[SampleRecord]]:
    """Score every task (with the model context `context` gives it), store its samples as it
    finishes, then the run and the files."""
    started = datetime.now(UTC)
    results: dict[str, TaskResult] = {}
    samples: list[SampleRecord] = []
    timing: dict[str, float] = {}
    ctx: TaskContext | None = None
    for p in prepared:
        ctx = context(p)
        if reporter:
            reporter.task_started(p.config.name, request_count(p.config, p.items, ctx.repeats))
        t0 = time.perf_counter()
        result, task_samples = SCORERS[p.config.kind](p.config, p.items, p.pool, ctx)
        timing[p.config.name] = round(time.perf_counter() - t0, 3)
        result.task_hash = p.hash
        results[p.config.name] = result
        store.add_samples(run_id, task_samples)
        samples += task_samples
        if reporter:
            reporter.task_finished(p.config.name, result)
    assert ctx is not None, "prepare_tasks returns at least one task"
    run = RunResult(
        run_id=run_id,
        model=ctx.model.model.identity,
        tasks=results,
        seed=ctx.seed,
        started_at=started,
        finished_at=datetime.now(UTC),
        config=config,
        versions=package_versions(),
    )
    if out_dir is not None:
        write_outputs(Path(out_dir), run, samples)
    store.finish_run(run_id, run, timing)
    return run, samples
