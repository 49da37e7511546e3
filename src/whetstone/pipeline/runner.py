"""`run_pipeline`: evaluate, learn (feedback, diagnosis, audit), optimize, evaluate every
candidate on the same tasks, compare each with the baseline (paired), select, gate.

Every stage is recorded under a hash of its inputs (see `stages`), so a second run of the same
pipeline reuses what is finished and a crashed run continues where it stopped: an evaluation
cut short resumes its unfinished run, and model answers come from the response cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.evaluate.engine import check_repeats, prepare_tasks
from whetstone.pipeline import steps
from whetstone.pipeline.context import ModelToEvaluate, PipelineContext, PipelineReporter
from whetstone.pipeline.evaluation import compare_with_baseline, evaluate_stage, load_samples
from whetstone.pipeline.metrics import COST_METRICS, split_metric
from whetstone.pipeline.optimization import optimize_stages
from whetstone.pipeline.records import PIPELINE_KIND, PipelineResult, StepArtifact
from whetstone.pipeline.schema import PipelineConfig
from whetstone.pipeline.selection import (
    CandidateResult,
    apply_gate,
    gated_candidates,
    select_candidate,
)
from whetstone.pipeline.stages import StageLedger
from whetstone.store import Store


def run_pipeline(
    config: PipelineConfig,
    *,
    store: Store | None = None,
    reporter: PipelineReporter | None = None,
    rerun: Sequence[str] = (),
    config_path: str | Path | None = None,
) -> PipelineResult:
    """Run the pipeline and return (and store as artifact `pipeline`/NAME) its result.

    `rerun` names stages to run again even when finished (prefixes match: "evaluate" reruns
    every evaluation; "all" reruns everything).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started, t0 = datetime.now(UTC), time.perf_counter()
    tasks = prepare_tasks([config.resolve(t) for t in config.tasks], config.limit)
    check_repeats(tasks, config.repeats, "repeats:")
    check_references(config, [t.config.name for t in tasks])
    steps.preflight(config)
    store = store or Store(config.db)
    ledger = StageLedger(store, config.name, reporter, _rerun_matcher(rerun))
    ctx = PipelineContext(config, store, ledger, tasks, reporter)
    config.workdir_path.mkdir(parents=True, exist_ok=True)

    base = ModelToEvaluate("baseline", "baseline", config.model, config.model_options)
    baseline = evaluate_stage(ctx, base)
    if baseline.error:
        raise WhetstoneError(f"the baseline evaluation failed: {baseline.error}")
    _check_metric_names(config, baseline)
    artifacts = _learning_stages(ctx, baseline)
    models = [
        ModelToEvaluate(c.name, "model", c.model, c.model_options) for c in config.candidates
    ] + optimize_stages(ctx, artifacts)
    candidates = [evaluate_stage(ctx, m) for m in models] + ctx.failed
    samples = load_samples(ctx, baseline, candidates)
    comparisons = compare_with_baseline(ctx, samples)
    selection = select_candidate(config.select, baseline, candidates) if config.select else None
    ok = [c.name for c in candidates if not c.error]
    gate = (
        apply_gate(
            config.gate,
            samples.comparer(config.seed, comparisons),
            gated_candidates(config.gate, selection, ok),
        )
        if config.gate
        else None
    )
    result = PipelineResult(
        name=config.name,
        description=config.description,
        config=config.model_dump(mode="json"),
        config_path=str(Path(config_path).resolve()) if config_path else None,
        workdir=str(config.workdir_path.resolve()),
        db=store.url,
        started_at=started,
        finished_at=datetime.now(UTC),
        seconds=round(time.perf_counter() - t0, 2),
        baseline=baseline,
        candidates=candidates,
        comparisons=comparisons,
        selection=selection,
        gate=gate,
        steps=artifacts,
        stages=ledger.records,
        reused=ledger.reused,
        notes=ctx.notes,
    )
    store.put_artifact(
        PIPELINE_KIND,
        config.name,
        result.model_dump(mode="json"),
        refs=[c.run_id for c in [baseline, *candidates] if c.run_id],
    )
    return result


def load_result(store: Store, name: str) -> PipelineResult | None:
    """The stored result of the last run of pipeline `name`, if any."""
    row = store.get_artifact(PIPELINE_KIND, name)
    return None if row is None else PipelineResult.model_validate(row.payload)


def _rerun_matcher(rerun: Sequence[str]) -> Callable[[str], bool]:
    wanted = list(rerun)
    return lambda stage: "all" in wanted or any(stage.startswith(w) for w in wanted)


def check_references(config: PipelineConfig, task_names: list[str]) -> None:
    """Every task a field names must be one of the pipeline's tasks."""
    known = set(task_names)
    refs: list[tuple[str, str | None]] = []
    if config.select:
        refs.append(("select.objective", split_metric(config.select.objective)[0]))
        refs += [
            (f"select.constraints[{i}].metric", split_metric(c.metric)[0])
            for i, c in enumerate(config.select.constraints)
        ]
    if config.gate:
        refs += [
            (f"gate.metrics[{i}]", split_metric(m)[0]) for i, m in enumerate(config.gate.metrics)
        ]
    refs.append(("latency.task", config.latency.task))
    for i, opt in enumerate(config.optimize):
        refs += [(f"optimize[{i}].tasks", t) for t in opt.tasks or []]
    for i, audit in enumerate(config.audit):
        refs += [(f"audit[{i}].against", t) for t in audit.against or []]
        refs.append((f"audit[{i}].task", audit.task))
    for where, task in refs:
        if task is not None and task not in known:
            raise ConfigError(
                f"pipeline '{config.name}': field '{where}' names task {task!r}, which is not "
                f"among the pipeline's tasks ({', '.join(task_names)})"
            )


def _check_metric_names(config: PipelineConfig, baseline: CandidateResult) -> None:
    """Metric names in the rule and the gate must be metrics the baseline run has."""
    names: list[tuple[str, str]] = []
    if config.select:
        names.append(("select.objective", config.select.objective))
        names += [
            (f"select.constraints[{i}].metric", c.metric)
            for i, c in enumerate(config.select.constraints)
        ]
    if config.gate:
        names += [(f"gate.metrics[{i}]", m) for i, m in enumerate(config.gate.metrics)]
    for where, name in names:
        task, metric = split_metric(name)
        if task is None and metric in COST_METRICS:
            continue
        if name not in baseline.metrics:
            have = sorted(m.split("/", 1)[1] for m in baseline.metrics if m.startswith(f"{task}/"))
            raise ConfigError(
                f"pipeline '{config.name}': field '{where}': task {task!r} has no metric "
                f"{metric!r} (it has: {', '.join(have)})"
            )


# --------------------------------------------------------------------------- evaluation


def _learning_stages(ctx: PipelineContext, baseline: CandidateResult) -> list[StepArtifact]:
    """Feedback, error analysis and data audit: each stores its result as an artifact. A step
    that fails is recorded (and noted in the result); the loop goes on without it."""
    config = ctx.config
    run_id = baseline.run_id or ""
    data = {t.config.name: t.config.resolve(t.config.data.path) for t in ctx.tasks}
    work: list[tuple[str, Callable[[], StepArtifact]]] = []
    if config.feedback:
        fb = config.feedback
        work.append(("feedback", lambda: steps.feedback_stage(ctx.ledger, ctx.store, fb)))
    if config.diagnose:
        work.append(
            ("diagnose", lambda: steps.diagnose_stage(ctx.ledger, ctx.store, config, run_id))
        )
    for audit in config.audit:
        work.append(
            (
                f"audit {audit.name or audit.data}",
                lambda a=audit: steps.audit_stage(ctx.ledger, ctx.store, config, a, data, run_id),  # type: ignore[misc]
            )
        )
    out: list[StepArtifact] = []
    for name, run in work:
        try:
            out.append(run())
        except ConfigError:
            raise
        except WhetstoneError as err:
            ctx.notes.append(f"{name} failed: {err}")
    return out
