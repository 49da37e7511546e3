"""The loop: evaluate, learn where the model fails, optimize, evaluate again, compare, select."""

from whetstone.pipeline.loading import load_pipeline, parse_pipeline
from whetstone.pipeline.records import PIPELINE_KIND, PipelineResult, StepArtifact
from whetstone.pipeline.runner import load_result, run_pipeline
from whetstone.pipeline.schema import PipelineConfig
from whetstone.pipeline.selection import CandidateResult, GateResult, SelectionResult
from whetstone.pipeline.stages import STAGE_KIND, StageRecord

__all__ = [
    "PIPELINE_KIND",
    "STAGE_KIND",
    "CandidateResult",
    "GateResult",
    "PipelineConfig",
    "PipelineResult",
    "SelectionResult",
    "StageRecord",
    "StepArtifact",
    "load_pipeline",
    "load_result",
    "parse_pipeline",
    "run_pipeline",
]
