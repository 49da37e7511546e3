"""Pydantic records that whetstone writes to disk, stores and serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MetricValue(BaseModel):
    """One aggregate metric with its 95% interval and the number of items behind it."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int


class TaskResult(BaseModel):
    """Aggregates of one task: metrics with intervals, plus tables such as a confusion matrix."""

    kind: str
    metrics: dict[str, MetricValue]
    tables: dict[str, Any] = Field(default_factory=dict)
    task_hash: str = ""


class SampleRecord(BaseModel):
    """One evaluated item: what the model saw, what it produced, and its per-item metrics."""

    model_config = ConfigDict(extra="allow")

    task: str
    id: str
    prompt: str
    prediction: Any = None
    gold: Any = None
    metrics: dict[str, float] = Field(default_factory=dict)
    loglikelihoods: list[float] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class ModelIdentity(BaseModel):
    """What identifies a model's outputs: backend, name, a content hash and the numeric dtype."""

    backend: str
    name: str
    hash: str
    dtype: str = ""

    @property
    def key(self) -> str:
        """A string that keys the response cache: equal keys give equal outputs."""
        return f"{self.backend}:{self.name}:{self.hash}:{self.dtype}"


class RunResult(BaseModel):
    """A whole evaluation run: the content of results.json."""

    run_id: str
    model: ModelIdentity
    tasks: dict[str, TaskResult]
    seed: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
