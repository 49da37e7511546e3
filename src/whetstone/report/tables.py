"""The report's tables: metrics with intervals, paired differences, the overview, the gate."""

from __future__ import annotations

from collections.abc import Sequence

from whetstone.evaluate.compare import NOT_COMPARED, Comparison
from whetstone.evaluate.gate import GateResult
from whetstone.metrics import headline_metrics as registry_headlines
from whetstone.metrics import higher_is_better
from whetstone.pipeline.metrics import COST_METRICS, split_metric
from whetstone.pipeline.records import PipelineResult
from whetstone.records import RunResult
from whetstone.report.model import Cell, ComparisonRow, MetricTable, OverviewRow


def metric_tables(runs: Sequence[tuple[str, RunResult]]) -> list[MetricTable]:
    """Per task, a row per metric and a cell (value and interval) per model that ran it."""
    tasks: dict[str, str] = {}
    for _, run in runs:
        for name, tr in run.tasks.items():
            tasks.setdefault(name, tr.kind)
    tables = []
    for task, kind in tasks.items():
        models = [(label, run) for label, run in runs if task in run.tasks]
        metrics = list(dict.fromkeys(m for _, run in models for m in run.tasks[task].metrics))
        rows = []
        for metric in metrics:
            cells = []
            for _, run in models:
                mv = run.tasks[task].metrics.get(metric)
                cell = Cell(mv.value, mv.ci_low, mv.ci_high, mv.n, mv.note) if mv else Cell()
                spread = run.tasks[task].tables.get("sampling", {}).get(metric)
                if spread:
                    cell.sampling = (spread["share"], int(spread["repeats"]))
                cells.append(cell)
            rows.append((metric, cells))
        tables.append(MetricTable(task, kind, [label for label, _ in models], rows))
    return tables


def _verdict(metric: str, diff: float, p: float, alpha: float = 0.05) -> str:
    if p >= alpha or diff == 0:
        return "same"
    return "better" if (diff > 0) == higher_is_better(metric) else "worse"


def comparison_rows(cmp: Comparison) -> list[ComparisonRow]:
    """The paired differences worth showing (quality metrics, not bookkeeping values)."""
    return [
        ComparisonRow(
            m.task,
            m.metric,
            m.a,
            m.b,
            m.diff,
            m.ci_low,
            m.ci_high,
            m.p_value,
            m.test,
            m.n,
            _verdict(m.metric, m.diff, m.p_value),
            m.mdd,
        )
        for m in cmp.metrics
        if m.metric not in NOT_COMPARED
    ]


def gate_rows(result: PipelineResult) -> list[dict[str, str]]:
    """One row per gate check: values, interval, margin, what the data could detect, verdict."""
    return [] if result.gate is None else check_rows(result.gate)


def check_rows(gate: GateResult) -> list[dict[str, str]]:
    """The gate's checks as text cells (the HTML report's and the Markdown summary's)."""
    return [
        {
            "candidate": c.candidate,
            "metric": c.metric,
            "baseline": _num(c.baseline),
            "value": _num(c.value),
            "diff": _num(c.diff, signed=True),
            "ci": f"[{_num(c.ci_low)}, {_num(c.ci_high)}]" if c.ci_low is not None else "",
            "margin": c.margin,
            "detectable": _num(c.detectable),
            "pass_power": f"{c.pass_power:.0%}" if c.pass_power is not None else "",
            "n": str(c.n),
            "status": c.verdict,
            "reason": c.reason,
        }
        for c in gate.checks
    ]


def format_metric(name: str, value: float) -> str:
    """A value for a summary table: parameters in millions, sizes and latencies readable."""
    if name == "params":
        return f"{value / 1e6:,.1f}M"
    if name in ("size_mb", "latency_ms"):
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{value:.4g}"


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return ""
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _task_headline(metrics: Sequence[str], task: str) -> str | None:
    """A task's first headline metric (the registry's), else its first metric."""
    own = [m for m in metrics if m.startswith(f"{task}/")]
    headline = set(registry_headlines())
    return next((m for m in own if split_metric(m)[1] in headline), own[0] if own else None)


def headline_metrics(result: PipelineResult) -> list[str]:
    """The metrics that summarize a pipeline: the rule's, the gate's (else each task's headline
    metric) and the costs."""
    names: list[str] = []
    if result.selection:
        names += [result.selection.rule.objective]
        names += [c.metric for c in result.selection.rule.constraints]
    if result.gate:
        names += result.gate.metrics
    if not names:
        found = (_task_headline(list(result.baseline.metrics), t) for t in result.baseline.tasks)
        names += [m for m in found if m]
    names += [c for c in COST_METRICS if c in result.baseline.metrics]
    return list(dict.fromkeys(names))


def overview(result: PipelineResult) -> tuple[list[str], list[OverviewRow]]:
    """The headline metrics of every model; for candidates, the paired difference and p."""
    columns = headline_metrics(result)
    selected = result.selection.selected if result.selection else None
    rows = []
    for cand in [result.baseline, *result.candidates]:
        cmp = result.comparisons.get(cand.name)
        cells = []
        for name in columns:
            value = cand.metrics.get(name)
            cell = format_metric(name, value) if value is not None else "–"
            diff = next(
                (m for m in (cmp.metrics if cmp else []) if f"{m.task}/{m.metric}" == name), None
            )
            if diff is not None:
                cell += f" ({diff.diff:+.3g}, p={diff.p_value:.2g})"
            cells.append(cell)
        rows.append(OverviewRow(cand.name, cand.origin, cand.name == selected, cells, cand.error))
    return columns, rows
