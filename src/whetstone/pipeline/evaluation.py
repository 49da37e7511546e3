"""The evaluation stage: a model on the pipeline's tasks, its costs, and the paired
comparison of every candidate with the baseline."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from whetstone.errors import WhetstoneError
from whetstone.evaluate.compare import Comparison, compare_samples
from whetstone.evaluate.engine import PreparedTask, evaluate
from whetstone.evaluate.gate import Comparer, sample_comparer
from whetstone.evaluate.kinds import repeats_of
from whetstone.models import LanguageModel, load_model
from whetstone.pipeline.context import ModelToEvaluate, PipelineContext, fingerprint
from whetstone.pipeline.measure import (
    Costs,
    count_parameters,
    measure_latency,
    model_folder,
    size_on_disk_mb,
)
from whetstone.pipeline.metrics import split_metric
from whetstone.pipeline.selection import CandidateResult
from whetstone.records import RunResult, SampleRecord
from whetstone.store import Store


def _latency_task(ctx: PipelineContext, tasks: list[str]) -> PreparedTask | None:
    """The task whose items are timed: the configured one, the objective's, else the first."""
    wanted = ctx.config.latency.task
    if wanted is None and ctx.config.select:
        wanted = split_metric(ctx.config.select.objective)[0]
    if wanted is not None and wanted in tasks:
        return ctx.task(wanted)
    return ctx.task(tasks[0]) if tasks else None


def _costs(ctx: PipelineContext, m: ModelToEvaluate, lm: LanguageModel, tasks: list[str]) -> Costs:
    costs = Costs(params=count_parameters(lm))
    folder = model_folder(m.spec, lm)
    costs.size_mb = size_on_disk_mb(folder)
    task = _latency_task(ctx, tasks)
    if task is not None:
        spec = ctx.config.latency
        median, p90, n = measure_latency(lm, task, spec.items, spec.warmup, ctx.config.seed)
        costs.latency_ms, costs.latency_p90_ms = round(median, 3), round(p90, 3)
        costs.latency_task, costs.latency_items = task.config.name, n
    return costs


def _repeats(ctx: PipelineContext, tasks: list[str]) -> int:
    """The pipeline's repeats where one of these tasks samples, else 1 (a candidate that
    answers only likelihood tasks has nothing to repeat)."""
    k = ctx.config.repeats
    return k if any(repeats_of(ctx.task(t).config, k) > 1 for t in tasks) else 1


def _evaluate_work(ctx: PipelineContext, m: ModelToEvaluate, tasks: list[str]) -> dict[str, Any]:
    options = m.options.model_dump()
    lm = load_model(m.spec, **options)
    try:
        ev = evaluate(
            lm,
            [ctx.task(t).config for t in tasks],
            limit=ctx.config.limit,
            seed=ctx.config.seed,
            db=ctx.store,
            out_dir=ctx.workdir / "eval" / m.name,
            resume=True,
            chat_template=ctx.config.chat_template,
            reporter=ctx.reporter,
            repeats=_repeats(ctx, tasks),
        )
        costs = _costs(ctx, m, lm, tasks)
    finally:
        lm.close()
    return {"run_id": ev.result.run_id, "costs": costs.model_dump(), "tasks": tasks}


def _run_exists(store: Store, run_id: str) -> bool:
    row = store.get_run(run_id, missing_ok=True)
    return row is not None and row.status == "finished"


def evaluate_stage(ctx: PipelineContext, m: ModelToEvaluate) -> CandidateResult:
    """Evaluate one model on the pipeline's tasks (or those it can answer) and measure it."""
    tasks = m.tasks or [t.config.name for t in ctx.tasks]
    inputs = {
        "model": fingerprint(m.spec),
        "options": m.options.model_dump(),
        "upstream": m.upstream,
        "tasks": {t: ctx.task(t).hash for t in tasks},
        "limit": ctx.config.limit,
        "seed": ctx.config.seed,
        "chat_template": ctx.config.chat_template,
        **({"repeats": ctx.config.repeats} if ctx.config.repeats > 1 else {}),
        "latency": ctx.config.latency.model_dump(),
        "objective": ctx.config.select.objective if ctx.config.select else None,
    }
    result = CandidateResult(name=m.name, origin=m.origin, model=m.spec, artifact=m.artifact)
    try:
        record = ctx.ledger.run(
            f"evaluate/{m.name}",
            inputs,
            lambda: _evaluate_work(ctx, m, tasks),
            still_valid=lambda out: _run_exists(ctx.store, out["run_id"]),
            refs=lambda out: [out["run_id"]],
        )
    except WhetstoneError as err:
        if m.origin == "baseline":
            raise
        result.error = f"evaluation failed: {err}"
        return result
    return _candidate_result(
        ctx.store, result, record.outputs["run_id"], record.outputs.get("costs", {})
    )


def _candidate_result(
    store: Store, result: CandidateResult, run_id: str, costs_raw: dict[str, Any]
) -> CandidateResult:
    row = store.get_run(run_id)
    assert row is not None and row.result is not None
    result.run_id = run_id
    result.tasks = list(row.result.tasks)
    result.metrics, result.intervals = _flatten(row.result)
    costs = Costs.model_validate(costs_raw)
    result.metrics.update(costs.as_metrics())
    result.costs = costs.model_dump()
    return result


def _flatten(run: RunResult) -> tuple[dict[str, float], dict[str, list[float | None]]]:
    values: dict[str, float] = {}
    intervals: dict[str, list[float | None]] = {}
    for task, tr in run.tasks.items():
        for metric, mv in tr.metrics.items():
            values[f"{task}/{metric}"] = mv.value
            intervals[f"{task}/{metric}"] = [mv.ci_low, mv.ci_high]
    return values, intervals


class StoredRuns(Mapping[str, tuple[str, list[SampleRecord]]]):
    """Each evaluated candidate's (run id, samples), read from the store when asked for, so no
    more than one candidate's samples are held at a time."""

    def __init__(self, store: Store, candidates: list[CandidateResult]) -> None:
        self.store = store
        self.runs = {c.name: c.run_id for c in candidates if c.run_id}

    def __getitem__(self, name: str) -> tuple[str, list[SampleRecord]]:
        run = self.runs[name]
        return run, self.store.get_samples(run)

    def __iter__(self) -> Iterator[str]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)


@dataclass(frozen=True)
class PairedSamples:
    """The baseline's stored samples and each evaluated candidate's (run id, samples)."""

    baseline_run: str
    baseline: list[SampleRecord]
    candidates: StoredRuns

    def comparer(self, seed: int, known: dict[str, Comparison]) -> Comparer:
        """Comparisons with the baseline at any level, for the gate (``known`` reused)."""
        return sample_comparer(
            self.baseline, self.candidates, baseline_run=self.baseline_run, seed=seed, known=known
        )


def load_samples(
    ctx: PipelineContext, baseline: CandidateResult, candidates: list[CandidateResult]
) -> PairedSamples:
    """The baseline's samples, and the candidates' to read one at a time."""
    assert baseline.run_id is not None
    runs = StoredRuns(ctx.store, candidates)
    return PairedSamples(baseline.run_id, ctx.store.get_samples(baseline.run_id), runs)


def compare_with_baseline(ctx: PipelineContext, samples: PairedSamples) -> dict[str, Comparison]:
    """Paired comparison of every evaluated candidate with the baseline (candidate - baseline)."""
    out: dict[str, Comparison] = {}
    for name, (run, cand) in samples.candidates.items():
        with contextlib.suppress(WhetstoneError):  # no shared items: nothing to pair
            out[name] = compare_samples(
                samples.baseline,
                cand,
                run_a=samples.baseline_run,
                run_b=run,
                seed=ctx.config.seed,
            )
    return out
