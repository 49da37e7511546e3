"""whetstone: evaluate, diagnose and optimize language models in one loop."""

from whetstone.errors import WhetstoneError
from whetstone.evaluate.compare import Comparison, compare_samples
from whetstone.evaluate.engine import Evaluation, evaluate
from whetstone.models import LanguageModel, load_model
from whetstone.records import MetricValue, ModelIdentity, RunResult, SampleRecord, TaskResult
from whetstone.store import Store
from whetstone.tasks import TaskConfig, load_tasks

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
