"""Evaluating in-memory models (a freshly trained student, an int8 model) with whetstone task
files, and measuring each one the same way for the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from whetstone.evaluate.engine import Evaluation, evaluate
from whetstone.models.base import LanguageModel
from whetstone.optimize.distill_measure import Footprint, SpeedStats
from whetstone.optimize.distill_report import ModelReport
from whetstone.optimize.distill_student import parameter_count
from whetstone.records import TaskResult
from whetstone.store import Store


class StageReporter(Protocol):
    """Progress of long stages (the CLI draws one bar per stage)."""

    def task_started(self, name: str, total: int) -> None:
        """A stage begins with `total` units of work."""

    def advance(self, n: int) -> None:
        """`n` more units are done."""

    def task_finished(self, name: str, result: Any) -> None:
        """The stage is done."""


class Prefixed:
    """A reporter whose stage names start with a model's role (`student · agnews`)."""

    def __init__(self, inner: StageReporter | None, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def task_started(self, name: str, total: int) -> None:
        """Forward with the prefix."""
        if self.inner:
            self.inner.task_started(f"{self.prefix} · {name}", total)

    def advance(self, n: int) -> None:
        """Forward."""
        if self.inner:
            self.inner.advance(n)

    def task_finished(self, name: str, result: TaskResult | None) -> None:
        """Forward with the prefix."""
        if self.inner:
            self.inner.task_finished(f"{self.prefix} · {name}", result)


def backend(model: Any, tokenizer: Any, task_type: str, name: str, model_hash: str) -> Any:
    """A whetstone model over an in-memory transformers model, identified by `model_hash` (so
    the response cache never mixes two models' answers)."""
    from whetstone.optimize.evaluation import in_memory_model

    lm = in_memory_model(model, tokenizer, task_type, name)
    lm.identity = lm.identity.model_copy(update={"hash": model_hash})
    return lm


def evaluate_model(
    lm: LanguageModel,
    tasks: list[str],
    eval_spec: Any,
    base_dir: Path,
    store: Store,
    reporter: StageReporter | None,
    role: str,
) -> Evaluation | None:
    """Run the evaluation tasks on `lm` (None when there are none)."""
    if not tasks:
        return None
    paths = [p if Path(p).is_absolute() else str(base_dir / p) for p in tasks]
    return evaluate(
        lm,
        paths,
        limit=eval_spec.limit,
        seed=eval_spec.seed,
        db=store,
        reporter=Prefixed(reporter, role),
    )


def model_report(
    role: str,
    name: str,
    model: Any,
    footprint: Footprint,
    speed: SpeedStats | None,
    evaluation: Evaluation | None,
    path: Path | None = None,
) -> ModelReport:
    """Size, speed and metrics of one model."""
    return ModelReport(
        role=role,
        name=name,
        path=str(path) if path else None,
        parameters=footprint.parameters,
        size_mb=footprint.size_mb,
        layers=getattr(getattr(model, "config", None), "num_hidden_layers", None),
        speed=speed,
        run_id=evaluation.result.run_id if evaluation else None,
        metrics={task: dict(result.metrics) for task, result in evaluation.result.tasks.items()}
        if evaluation
        else {},
    )


def footprint(model: Any, size_mb: float) -> Footprint:
    """Parameters (tied weights once) and the given size on disk."""
    return Footprint(parameters=parameter_count(model), size_mb=size_mb)
