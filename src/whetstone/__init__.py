"""whetstone: evaluate, diagnose and optimize language models in one loop.

The names below are imported on first use, so that ``import whetstone`` (and the command
line's ``--help``) does not load the engine, torch or scipy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whetstone.errors import WhetstoneError
    from whetstone.evaluate.compare import Comparison, compare_samples
    from whetstone.evaluate.engine import Evaluation, evaluate
    from whetstone.models import LanguageModel, load_model
    from whetstone.records import MetricValue, ModelIdentity, RunResult, SampleRecord, TaskResult
    from whetstone.store import Store
    from whetstone.tasks import TaskConfig, load_tasks

_HOMES = {
    "Comparison": "whetstone.evaluate.compare",
    "Evaluation": "whetstone.evaluate.engine",
    "LanguageModel": "whetstone.models",
    "MetricValue": "whetstone.records",
    "ModelIdentity": "whetstone.records",
    "RunResult": "whetstone.records",
    "SampleRecord": "whetstone.records",
    "Store": "whetstone.store",
    "TaskConfig": "whetstone.tasks",
    "TaskResult": "whetstone.records",
    "WhetstoneError": "whetstone.errors",
    "compare_samples": "whetstone.evaluate.compare",
    "evaluate": "whetstone.evaluate.engine",
    "load_model": "whetstone.models",
    "load_tasks": "whetstone.tasks",
}

__all__ = [
    "Comparison",
    "Evaluation",
    "LanguageModel",
    "MetricValue",
    "ModelIdentity",
    "RunResult",
    "SampleRecord",
    "Store",
    "TaskConfig",
    "TaskResult",
    "WhetstoneError",
    "compare_samples",
    "evaluate",
    "load_model",
    "load_tasks",
]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'whetstone' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
