"""The record of a pipeline run, stored as the artifact `pipeline`/NAME and read by reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from whetstone.evaluate.compare import Comparison
from whetstone.pipeline.selection import CandidateResult, GateResult, SelectionResult
from whetstone.pipeline.stages import StageRecord

#: Artifact kind of pipeline results (key: the pipeline's name).
PIPELINE_KIND = "pipeline"


class StepArtifact(BaseModel):
    """A result another step stored (feedback, diagnosis, audit, finetune, study, distill)."""

    step: str
    kind: str
    key: str
    title: str = ""


class PipelineResult(BaseModel):
    """Everything one pass of a pipeline produced, with pointers to the stored details."""

    name: str
    description: str = ""
    config: dict[str, Any]
    config_path: str | None = None
    workdir: str
    db: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    baseline: CandidateResult
    candidates: list[CandidateResult] = Field(default_factory=list)
    comparisons: dict[str, Comparison] = Field(default_factory=dict)
    selection: SelectionResult | None = None
    gate: GateResult | None = None
    steps: list[StepArtifact] = Field(default_factory=list)
    stages: list[StageRecord] = Field(default_factory=list)
    reused: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def candidate(self, name: str) -> CandidateResult | None:
        """The baseline or candidate with this name."""
        return next((c for c in [self.baseline, *self.candidates] if c.name == name), None)
