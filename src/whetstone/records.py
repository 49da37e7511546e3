"""Pydantic records that whetstone writes to disk, stores and serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MetricValue(BaseModel):
    """One aggregate metric with its 95% interval and the number of items behind it.

    ``too_few`` marks a sample too small for an honest interval: the ends are then None (never
    a point interval) and ``note`` says why. ``method`` names how the interval was computed.
    """

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int
    method: str = ""
    too_few: bool = False
    note: str | None = None


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
    """What identifies a model's outputs: backend, name, a content hash, the numeric dtype and a
    token window the user chose (scores depend on it)."""

    backend: str
    name: str
    hash: str
    dtype: str = ""
    window: int | None = None

    @property
    def key(self) -> str:
        """A string that keys the response cache: equal keys give equal outputs."""
        key = f"{self.backend}:{self.name}:{self.hash}:{self.dtype}"
        return key if self.window is None else f"{key}:window={self.window}"


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


class FeedbackJudgment(BaseModel):
    """One participant's judgment of one model answer in a feedback campaign.

    The form in which feedback reaches diagnosis, the loop and reports: one record per
    (participant, item, model answer), with whichever questions the campaign asked.
    """

    campaign: str
    mode: Literal["review", "chat", "arena"]
    item_id: str
    participant: str
    model: str
    model_version: str = ""
    prompt: str
    output: str
    reference: str | None = None
    position: int | None = None
    thumbs: bool | None = None
    likert: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = None
    correction: str | None = None
    tags: list[str] = Field(default_factory=list)
    arena_outcome: Literal["win", "loss", "tie", "both_bad"] | None = None
    opponent: str | None = None
    created_at: datetime | None = None

    @property
    def is_failure(self) -> bool:
        """True when the judgment marks the answer as bad (thumbs down, Likert <= 2, a lost
        or both-bad battle, an error tag, or a correction that differs from the output)."""
        if self.thumbs is False or (self.likert is not None and self.likert <= 2):
            return True
        if self.arena_outcome in ("loss", "both_bad") or self.tags:
            return True
        return self.correction is not None and self.correction.strip() != self.output.strip()
