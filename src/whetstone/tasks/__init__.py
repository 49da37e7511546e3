"""Task files (YAML) and the data they point to."""

from whetstone.tasks.loading import (
    chunk_text,
    gold_index,
    gold_label,
    load_fewshot,
    load_items,
    load_tasks,
    prompt_fields,
    task_hash,
)
from whetstone.tasks.schema import DataSpec, FewshotSpec, TaskConfig, WindowSpec

__all__ = [
    "DataSpec",
    "FewshotSpec",
    "TaskConfig",
    "WindowSpec",
    "chunk_text",
    "gold_index",
    "gold_label",
    "load_fewshot",
    "load_items",
    "load_tasks",
    "prompt_fields",
    "task_hash",
]
