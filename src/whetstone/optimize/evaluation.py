"""Whetstone tasks scored on a model held in memory (one being trained), without the store.

Intermediate evaluations during training and the objective of a trial run the same task
scorers as `whetstone evaluate`, on the same items, so their numbers are the numbers a stored
run would show; they only skip the response cache and the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from whetstone.evaluate.cache import CachedModel
from whetstone.evaluate.engine import PreparedTask
from whetstone.evaluate.kinds import SCORERS, TaskContext
from whetstone.models.base import LanguageModel, Progress
from whetstone.records import SampleRecord, TaskResult

Scored = dict[str, tuple[TaskResult, list[SampleRecord]]]


def in_memory_model(model: Any, tokenizer: Any, task_type: str, name: str) -> LanguageModel:
    """A whetstone backend over a model being trained (a PEFT model is used through its base,
    whose layers carry the adapters)."""
    from whetstone.models.classifier import SequenceClassifier
    from whetstone.optimize.in_memory import InMemoryCausalLM

    if task_type == "classification":
        return SequenceClassifier(model=model, tokenizer=tokenizer, name=name, model_hash=name)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return InMemoryCausalLM(base, tokenizer, name)


def score_tasks(
    model: LanguageModel,
    tasks: Sequence[PreparedTask],
    *,
    seed: int = 0,
    progress: Progress | None = None,
) -> Scored:
    """Every task's result and samples, scored without cache or store."""
    ctx = TaskContext(CachedModel(model, None), seed, lambda text: text, progress)
    out: Scored = {}
    for p in tasks:
        result, samples = SCORERS[p.config.kind](p.config, p.items, p.pool, ctx)
        out[p.config.name] = (result, samples)
    return out


def score_items(
    model: LanguageModel, task: PreparedTask, items: list[dict[str, Any]], seed: int = 0
) -> tuple[TaskResult, list[SampleRecord]]:
    """One task scored on a subset of its items (for per-item pruning in chunks)."""
    part = PreparedTask(task.config, items, task.pool, task.hash)
    return score_tasks(model, [part], seed=seed)[task.config.name]


def metric_value(scored: Scored, task: str, metric: str) -> float:
    """The aggregate ``metric`` of ``task``, or a KeyError naming what there is."""
    if task not in scored:
        raise KeyError(f"no task '{task}' (tasks: {', '.join(scored)})")
    metrics = scored[task][0].metrics
    if metric not in metrics:
        raise KeyError(f"task '{task}' has no metric '{metric}' (it has: {', '.join(metrics)})")
    return float(metrics[metric].value)
