"""Gather a report from the store: a pipeline's result, or a single evaluation run."""

from __future__ import annotations

from pathlib import Path

from whetstone.errors import WhetstoneError
from whetstone.pipeline.loading import load_pipeline
from whetstone.pipeline.records import PipelineResult
from whetstone.pipeline.runner import load_result
from whetstone.records import RunResult, SampleRecord
from whetstone.report.figures import (
    calibration_figures,
    confusion_figures,
    difference_figure,
    tradeoff_figure,
)
from whetstone.report.model import (
    CandidateView,
    Report,
)
from whetstone.report.samples import changed_examples, failure_examples
from whetstone.report.steps import step_sections
from whetstone.report.tables import comparison_rows, gate_rows, metric_tables, overview
from whetstone.store import Store


def resolve_target(store: Store, target: str) -> PipelineResult | RunResult:
    """A pipeline result (pipeline YAML file or stored name) or a finished run (id or prefix)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        name = load_pipeline(path).name
        result = load_result(store, name)
        if result is None:
            raise WhetstoneError(
                f"pipeline '{name}' ({target}) has no stored result in {store.url!r}: "
                f"run `whetstone run {target}` first (with the same --db)"
            )
        return result
    result = load_result(store, target)
    if result is not None:
        return result
    row = store.get_run(target, missing_ok=True)
    if row is None:
        raise WhetstoneError(
            f"{target!r} is neither a pipeline file, a stored pipeline nor a run id "
            f"in {store.url!r}"
        )
    if row.result is None:
        raise WhetstoneError(f"run {row.run_id} is {row.status}: it has no results to report")
    return row.result


def build_report(store: Store, target: PipelineResult | RunResult | str) -> Report:
    """The report of a pipeline result, a run, or a target string (see resolve_target)."""
    if isinstance(target, str):
        target = resolve_target(store, target)
    if isinstance(target, PipelineResult):
        return _pipeline_report(store, target)
    return _run_report(store, target)


# --------------------------------------------------------------------------- shared parts


def _candidate_views(result: PipelineResult) -> list[CandidateView]:
    verdicts = {v.name: v for v in (result.selection.verdicts if result.selection else [])}
    views = []
    for cand in result.candidates:
        cmp = result.comparisons.get(cand.name)
        rows = comparison_rows(cmp) if cmp else []
        verdict = verdicts.get(cand.name)
        views.append(
            CandidateView(
                cand.name,
                cand.origin,
                cand.model,
                rows,
                difference_figure(cand.name, rows),
                verdict.eligible if verdict else None,
                verdict.reasons if verdict else [],
                cand.error,
                cand.costs,
            )
        )
    return views


def _pipeline_facts(result: PipelineResult) -> list[tuple[str, str]]:
    n = len(result.stages)
    facts = [
        ("model", result.baseline.model),
        ("tasks", ", ".join(result.baseline.tasks)),
        ("candidates", ", ".join(c.name for c in result.candidates) or "none"),
        ("baseline run", result.baseline.run_id or ""),
        ("this run", f"{result.seconds:.1f} s, {len(result.reused)} of {n} stage(s) reused"),
        ("stages' own time", f"{sum(s.seconds for s in result.stages):.0f} s (when they ran)"),
        ("finished", result.finished_at.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    if result.config.get("limit"):
        facts.append(("items per task", f"first {result.config['limit']}"))
    return facts


def _headline(result: PipelineResult) -> str:
    if result.selection is None:
        return f"{len(result.candidates)} candidate(s) compared with the baseline"
    sel = result.selection
    if sel.selected is None:
        return f"No candidate meets the rule (objective {sel.rule.objective}); the baseline stays."
    chosen = result.candidate(sel.selected)
    value = chosen.metrics.get(sel.rule.objective) if chosen else None
    base = result.baseline.metrics.get(sel.rule.objective)
    shown = (
        f" = {value:.4g} (baseline {base:.4g})" if value is not None and base is not None else ""
    )
    return f"Selected: {sel.selected} · {sel.rule.objective}{shown}"


def _pipeline_report(store: Store, result: PipelineResult) -> Report:
    models = [c for c in [result.baseline, *result.candidates] if c.run_id]
    runs: list[tuple[str, RunResult]] = []
    samples: dict[str, list[SampleRecord]] = {}
    for cand in models:
        row = store.get_run(cand.run_id or "", missing_ok=True)
        if row is not None and row.result is not None:
            runs.append((cand.name, row.result))
            samples[cand.name] = store.get_samples(row.run_id)
    selected = result.selection.selected if result.selection else None
    focus = selected if selected and selected != "baseline" else None
    if focus is None and result.candidates:
        focus = next((c.name for c in result.candidates if c.run_id), None)
    confusion_runs = [(n, r) for n, r in runs if n in ("baseline", focus)]
    examples = (
        changed_examples(samples["baseline"], samples[focus], focus)
        if focus and focus in samples
        else failure_examples(samples.get("baseline", []), "baseline")
    )
    gate = result.gate
    columns, rows = overview(result)
    return Report(
        kind="pipeline",
        title=f"whetstone · pipeline {result.name}",
        subtitle=result.description,
        facts=_pipeline_facts(result),
        headline=_headline(result),
        verdict="" if gate is None else gate.verdict,
        tables=metric_tables(runs),
        calibration=calibration_figures(list(samples.items())),
        confusion=confusion_figures(confusion_runs),
        candidates=_candidate_views(result),
        tradeoff=tradeoff_figure(result),
        gate_rows=gate_rows(result),
        gate_message=gate.message if gate else "",
        gate_level=f"{100 * (1 - gate.alpha):g}%" if gate else "95%",
        gate_tests=gate.tests if gate else 0,
        steps=step_sections(store, result.steps),
        examples=examples,
        stages=[
            {
                "stage": r.stage,
                "status": r.status + (" (reused)" if r.stage in result.reused else ""),
                "seconds": f"{r.seconds:.1f}",
                "error": r.error or "",
            }
            for r in result.stages
        ],
        notes=result.notes,
        overview_columns=columns,
        overview=rows,
    )


# --------------------------------------------------------------------------- single runs


def _run_report(store: Store, run: RunResult) -> Report:
    samples = store.get_samples(run.run_id)
    label = run.model.name
    related = [a for a in store.list_artifacts(limit=500) if run.run_id in a.refs]
    from whetstone.pipeline.records import StepArtifact

    arts = [StepArtifact(step=a.kind, kind=a.kind, key=a.key) for a in related]
    return Report(
        kind="run",
        title=f"whetstone · run {run.run_id}",
        subtitle=f"{label} ({run.model.backend}, {run.model.dtype or 'default dtype'})",
        facts=[
            ("model", label),
            ("tasks", ", ".join(run.tasks)),
            ("seed", str(run.seed)),
            ("finished", run.finished_at.strftime("%Y-%m-%d %H:%M UTC") if run.finished_at else ""),
            ("versions", ", ".join(f"{k} {v}" for k, v in run.versions.items())),
        ],
        headline=f"Evaluation of {label} on {len(run.tasks)} task(s)",
        verdict="",
        tables=metric_tables([(label, run)]),
        calibration=calibration_figures([(label, samples)]),
        confusion=confusion_figures([(label, run)]),
        candidates=[],
        tradeoff=None,
        gate_rows=[],
        gate_message="",
        steps=step_sections(store, arts),
        examples=failure_examples(samples, label),
        stages=[],
    )
