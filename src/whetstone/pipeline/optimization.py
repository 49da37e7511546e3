"""The optimization stages: each makes a candidate model, from the pipeline's model or from
another candidate."""

from __future__ import annotations

from pathlib import Path

from whetstone.errors import WhetstoneError
from whetstone.pipeline import steps
from whetstone.pipeline.context import ModelToEvaluate, PipelineContext
from whetstone.pipeline.records import StepArtifact
from whetstone.pipeline.schema import Optimization
from whetstone.pipeline.selection import CandidateResult


def _start_model(
    ctx: PipelineContext, opt: Optimization, made: dict[str, ModelToEvaluate]
) -> ModelToEvaluate:
    """The model an optimization starts from: the baseline, a candidate or an earlier one
    (a WhetstoneError when that one failed)."""
    config = ctx.config
    opt_start = opt.start_from
    if opt_start in made:
        return made[opt_start]
    if opt_start in {o.name for o in config.optimize}:
        raise WhetstoneError(f"it starts from {opt_start!r}, which failed")
    listed = {c.name: c for c in config.candidates}
    if opt_start in listed:
        c = listed[opt_start]
        return ModelToEvaluate(c.name, "model", c.model, c.model_options)
    return ModelToEvaluate("baseline", "baseline", config.model, config.model_options)


def _answerable(ctx: PipelineContext, spec: str) -> list[str] | None:
    """The tasks a model can answer when it cannot answer all: a sequence classifier answers
    classification tasks only (None: every task)."""
    try:
        from whetstone.models.classifier import is_sequence_classifier
    except ImportError:
        return None
    from whetstone.models.backends import quantized_folder

    if not spec or not (is_sequence_classifier(spec) or quantized_folder(spec)):
        return None
    from whetstone.optimize.distill_student import detect_task

    if quantized_folder(spec) and detect_task(Path(spec)) != "classification":
        return None
    return [t.config.name for t in ctx.tasks if t.config.kind == "classification"] or None


def optimize_stages(ctx: PipelineContext, artifacts: list[StepArtifact]) -> list[ModelToEvaluate]:
    """Run each optimization (its stored result is added to `artifacts`); each gives a
    candidate model to evaluate. One that fails is recorded in `ctx.failed`."""
    made: dict[str, ModelToEvaluate] = {}
    for opt in ctx.config.optimize:
        try:
            start = _start_model(ctx, opt, made)
            record, art, out = steps.optimize_stage(
                ctx.ledger, ctx.store, ctx.config, opt, start.spec, upstream=start.upstream
            )
        except WhetstoneError as err:
            ctx.failed.append(
                CandidateResult(
                    name=opt.name, origin=opt.method, model="", error=f"{opt.method} failed: {err}"
                )
            )
            continue
        artifacts.append(art)
        tasks = (
            opt.tasks
            or [t for t in out.tasks or [] if t in ctx.names]
            or _answerable(ctx, out.model)
        )
        made[opt.name] = ModelToEvaluate(
            opt.name,
            opt.method,
            out.model,
            out.options,
            upstream=record.key,
            tasks=tasks,
            artifact=f"{art.kind}/{art.key}",
        )
    return list(made.values())
