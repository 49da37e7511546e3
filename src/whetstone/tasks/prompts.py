"""Prompt rendering: the task's template filled from an item, with few-shot examples before it."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from whetstone.errors import DataError
from whetstone.tasks.loading import gold_index, gold_label
from whetstone.tasks.schema import TaskConfig


def render(template: str, item: dict[str, Any], task: TaskConfig) -> str:
    """`template` with `{field}`s taken from the item's columns."""
    try:
        return template.format_map(item)
    except (KeyError, IndexError, AttributeError, ValueError) as exc:
        raise DataError(
            f"task '{task.name}': item {item.get('_id', '?')}: prompt template cannot be filled "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def targets(task: TaskConfig, item: dict[str, Any]) -> list[str]:
    """Reference answers of a generation item (a column holding one text or a list)."""
    value = item[task.target or ""]
    refs = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    if not refs:
        raise DataError(f"task '{task.name}': item {item['_id']}: empty list of references")
    return refs


def answer_text(task: TaskConfig, item: dict[str, Any]) -> str:
    """What follows the prompt in a solved example: the gold choice, label or reference."""
    if task.kind == "multiple_choice":
        return task.choice_prefix + str(item[task.choices or ""][gold_index(task, item)])
    if task.kind == "classification":
        return task.choice_prefix + (task.labels or {})[gold_label(task, item)]
    if task.kind == "generation":
        return task.choice_prefix + targets(task, item)[0]
    return ""


def fewshot_examples(
    task: TaskConfig, item: dict[str, Any], pool: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`k` examples for this item, drawn from the pool without the item itself.

    The draw depends only on the few-shot seed and the item's id, so it is the same whatever
    the limit, the order of items or the batch size.
    """
    spec = task.fewshot
    if spec is None or spec.k == 0:
        return []
    candidates = [ex for ex in pool if ex["_id"] != item["_id"]] if spec.path is None else pool
    rng = random.Random(f"{spec.seed}:{item['_id']}")
    return rng.sample(list(candidates), min(spec.k, len(candidates)))


def build_prompt(task: TaskConfig, item: dict[str, Any], pool: Sequence[dict[str, Any]]) -> str:
    """The full prompt of an item: solved few-shot examples, then the item's own prompt."""
    parts = [
        render(task.fewshot_prompt or task.prompt, ex, task) + answer_text(task, ex)
        for ex in fewshot_examples(task, item, pool)
    ]
    parts.append(render(task.prompt, item, task))
    separator = task.fewshot.separator if task.fewshot else "\n\n"
    return separator.join(parts)


def input_text(task: TaskConfig, item: dict[str, Any]) -> str:
    """What a sequence classifier reads for an item: the task's prompt, without few-shot."""
    return render(task.prompt, item, task)
