"""Pydantic records of a fine-tune and of a study: what is stored as artifacts and in files.

Stored artifacts: ``("finetune", NAME)`` holds a `FinetuneResult`; ``("study", STUDY_NAME)``
holds a `StudyResult`. Both are JSON (``model_dump(mode="json")``) and read back with
``model_validate``.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from whetstone.evaluate.compare import Comparison
from whetstone.records import MetricValue

TaskMetrics = dict[str, dict[str, MetricValue]]
"""task name -> metric name -> value with its interval."""


class TrainingSummary(BaseModel):
    """What one training run did and spent."""

    model_path: str | None
    task_type: Literal["causal_lm", "classification"]
    method: Literal["full", "lora"]
    base_model: str
    train_task: str
    train_examples: int
    trainable_parameters: int
    total_parameters: int
    steps: int
    epochs: float
    train_seconds: float
    # examples and tokens the optimizer saw (repeats counted), and transformers' FLOP estimate
    train_samples: int
    train_tokens: int = 0
    train_flos: float = 0.0
    # "task/metric" watched during training, the best value and the step it came from
    monitor: str | None = None
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    pruned: bool = False
    # the Trainer's log history: loss, learning rate, eval_TASK/METRIC values by step
    history: list[dict[str, Any]] = Field(default_factory=list)
    checkpoints: list[str] = Field(default_factory=list)
    adapter_path: str | None = None

    @property
    def compute(self) -> dict[str, float]:
        """What the training spent, as a trial outcome reports it."""
        return {
            "train_seconds": self.train_seconds,
            "train_samples": float(self.train_samples),
            "train_tokens": float(self.train_tokens),
            "train_flos": self.train_flos,
            "steps": float(self.steps),
        }


class FinetuneResult(BaseModel):
    """A `whetstone finetune` run: the training and the paired evaluation against the base."""

    name: str
    created_at: datetime
    output_dir: str
    training: TrainingSummary
    eval_tasks: list[str] = Field(default_factory=list)
    base_run: str | None = None
    tuned_run: str | None = None
    base_metrics: TaskMetrics = Field(default_factory=dict)
    tuned_metrics: TaskMetrics = Field(default_factory=dict)
    # paired comparison, tuned minus base, item by item (`whetstone compare BASE TUNED`)
    comparison: Comparison | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class TrialRecord(BaseModel):
    """One trial of a study as Optuna stored it, with what whetstone recorded about it."""

    number: int
    state: str
    params: dict[str, Any]
    values: list[float] | None = None
    intermediate: dict[int, float] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    model_path: str | None = None
    # the model folder is still on disk (only the best K are kept)
    kept: bool = False
    compute: dict[str, float] = Field(default_factory=dict)
    worker: str | None = None


class StudyResult(BaseModel):
    """A `whetstone tune` study: trials, the best, importances and best-vs-base comparison."""

    study_name: str
    storage: str
    trainer: str
    directions: list[Literal["maximize", "minimize"]]
    # "task/metric" of each objective, in order
    objectives: list[str]
    sampler: str
    pruner: str
    search_space: dict[str, Any]
    n_trials: int
    trials: list[TrialRecord]
    # numbers of the best trial (single objective) or of the Pareto front (several)
    best_trials: list[int]
    best_params: dict[str, Any] = Field(default_factory=dict)
    best_values: list[float] = Field(default_factory=list)
    best_model: str | None = None
    # objective -> parameter -> importance (Optuna's fANOVA, seeded), summing to 1
    importances: dict[str, dict[str, float]] = Field(default_factory=dict)
    importance_note: str | None = None
    # summed over every trial: train_seconds, train_samples, train_flos, ...
    total_compute: dict[str, float] = Field(default_factory=dict)
    # the base model's value of each objective on the validation tasks
    base_values: list[float] | None = None
    compare_tasks: list[str] = Field(default_factory=list)
    base_run: str | None = None
    best_run: str | None = None
    base_metrics: TaskMetrics = Field(default_factory=dict)
    best_metrics: TaskMetrics = Field(default_factory=dict)
    comparison: Comparison | None = None
    created_at: datetime


def write_json(path: Path, record: BaseModel) -> None:
    """Write a record as indented JSON atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(record.model_dump_json(indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def task_metrics(result: Any) -> TaskMetrics:
    """task -> metric -> MetricValue of a `RunResult`."""
    return {name: dict(task.metrics) for name, task in result.tasks.items()}
