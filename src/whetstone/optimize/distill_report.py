"""Result records of distillation and quantization, the teacher-vs-student comparison, and the
self-contained HTML section that reports embed.

Retention is student / teacher for metrics where higher is better and teacher / student where
lower is better (perplexity, bits per byte, calibration error), so 1.0 always means "kept all of
the teacher's quality". Its 95% interval comes from a bootstrap over the paired items; the
difference between two models on the same items is tested with whetstone's paired comparison
(McNemar for 0/1 metrics, paired bootstrap otherwise).
"""

from __future__ import annotations

import html
import math
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from whetstone.errors import WhetstoneError
from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.metrics import MIN_RATIO_N
from whetstone.evaluate.statistics import bca_interval, bootstrap_distribution, resample_counts
from whetstone.metrics import (
    apply_transform,
    headline_metrics,
    higher_is_better,
    is_known,
    metric_spec,
)
from whetstone.optimize.distill_measure import SpeedStats
from whetstone.records import MetricValue, SampleRecord

N_BOOT = 2000


class ModelReport(BaseModel):
    """One model as measured: size, speed and each task's metrics."""

    role: str
    name: str
    path: str | None = None
    parameters: int
    size_mb: float
    layers: int | None = None
    speed: SpeedStats | None = None
    run_id: str | None = None
    metrics: dict[str, dict[str, MetricValue]] = Field(default_factory=dict)


class PairedDiff(BaseModel):
    """B - A on the same items, with its 95% interval and p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str


class MetricRow(BaseModel):
    """One task metric for the reference model and a candidate (student or int8 model)."""

    task: str
    metric: str
    higher_is_better: bool
    reference: float
    candidate: float
    ratio: float
    retention: float
    retention_ci: tuple[float, float] | None = None
    vs_reference: PairedDiff | None = None
    ablation: float | None = None
    gain: PairedDiff | None = None
    quantized: float | None = None


class TrainingReport(BaseModel):
    """What one training run did."""

    steps: int
    seconds: float
    examples: int
    loss: float
    soft: float
    hard: float
    hidden: float
    history: list[dict[str, float]] = Field(default_factory=list)


class CacheReport(BaseModel):
    """The offline teacher cache: where, and how much of it this run computed."""

    folder: str
    examples: int
    computed: int
    top_k: int


class DistillResult(BaseModel):
    """Everything `whetstone distill` measured: the artifact stored under kind "distill"."""

    key: str
    created_at: datetime
    task_type: str
    mode: str
    config: dict[str, Any]
    teacher: ModelReport
    student: ModelReport
    ablation: ModelReport | None = None
    quantized: ModelReport | None = None
    rows: list[MetricRow]
    training: TrainingReport
    ablation_training: TrainingReport | None = None
    cache: CacheReport | None = None
    student_dir: str
    speedup_latency: float | None = None
    speedup_throughput: float | None = None
    size_ratio: float
    parameter_ratio: float
    machine: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


class QuantizeResult(BaseModel):
    """Everything `whetstone quantize` measured: the artifact stored under kind "quantize"."""

    key: str
    created_at: datetime
    task_type: str
    config: dict[str, Any]
    original: ModelReport
    quantized: ModelReport
    rows: list[MetricRow]
    output_dir: str
    speedup_latency: float | None = None
    speedup_throughput: float | None = None
    size_ratio: float
    machine: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)


# ------------------------------------------------------------------------- comparison


def _per_item(samples: list[SampleRecord], task: str) -> dict[str, SampleRecord]:
    return {s.id: s for s in samples if s.task == task}


def _retention_columns(
    a: dict[str, SampleRecord], b: dict[str, SampleRecord], ids: list[str], metric: str
) -> tuple[np.ndarray, np.ndarray, Any] | None:
    """Per-item numerator and denominator columns (n, 2) of each model, and the transform."""
    if is_known(metric) and metric_spec(metric).aggregation == "ratio":
        spec = metric_spec(metric)
        if spec.unit is None or spec.unit not in a[ids[0]].metrics:
            return None
        num = np.array([[a[i].metrics["logprob"], b[i].metrics["logprob"]] for i in ids])
        den = np.array([[a[i].metrics[spec.unit], b[i].metrics[spec.unit]] for i in ids])
        return num, den.astype(float), lambda r: apply_transform(spec, r)
    if metric not in a[ids[0]].metrics or metric not in b[ids[0]].metrics:
        return None
    num = np.array([[a[i].metrics[metric], b[i].metrics[metric]] for i in ids], dtype=float)
    return num, np.ones_like(num), lambda r: r


def retention_interval(
    ref: list[SampleRecord], cand: list[SampleRecord], task: str, metric: str, seed: int = 0
) -> tuple[float, float] | None:
    """BCa 95% interval of the retention over paired items (None when not per item)."""
    a, b = _per_item(ref, task), _per_item(cand, task)
    ids = [i for i in a if i in b]
    if len(ids) < MIN_RATIO_N:
        return None
    columns = _retention_columns(a, b, ids, metric)
    if columns is None:
        return None
    num, den, transform = columns
    lower = not higher_is_better(metric)

    def stat(counts: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            va = transform((counts @ num[:, 0]) / (counts @ den[:, 0]))
            vb = transform((counts @ num[:, 1]) / (counts @ den[:, 1]))
            return np.asarray(va / vb if lower else vb / va)

    n = len(ids)
    point = float(stat(np.ones((1, n)))[0])
    dist = bootstrap_distribution(
        n, lambda idx: stat(resample_counts(idx, n).astype(float)), n_boot=N_BOOT, seed=seed
    )
    jack = stat(1.0 - np.eye(n)) if n <= 2000 else stat(_drop_groups(n))
    if not np.isfinite(point) or not np.isfinite(dist).any():
        return None
    low, high = bca_interval(point, dist, jack, n)
    return float(low), float(high)


def _drop_groups(n: int, groups: int = 200) -> np.ndarray:
    """(groups, n) weights that each leave one group of items out."""
    return (np.arange(n)[None, :] % groups != np.arange(groups)[:, None]).astype(float)


def _paired(ref: list[SampleRecord], cand: list[SampleRecord], seed: int) -> dict[tuple, Any]:
    if not ref or not cand:
        return {}
    try:
        cmp = compare_samples(ref, cand, seed=seed)
    except WhetstoneError:
        return {}
    return {
        (m.task, m.metric): PairedDiff(
            diff=m.diff, ci_low=m.ci_low, ci_high=m.ci_high, p_value=m.p_value, test=m.test
        )
        for m in cmp.metrics
    }


def compare_models(
    reference: ModelReport,
    candidate: ModelReport,
    ref_samples: list[SampleRecord],
    cand_samples: list[SampleRecord],
    *,
    ablation: ModelReport | None = None,
    ablation_samples: list[SampleRecord] | None = None,
    quantized: ModelReport | None = None,
    seed: int = 0,
) -> list[MetricRow]:
    """One row per task metric: values, retention with its interval, paired tests."""
    vs_ref = _paired(ref_samples, cand_samples, seed)
    gains = _paired(ablation_samples or [], cand_samples, seed) if ablation else {}
    rows = []
    for task, metrics in reference.metrics.items():
        for metric, ref_value in metrics.items():
            cand_value = candidate.metrics.get(task, {}).get(metric)
            if cand_value is None:
                continue
            lower = not higher_is_better(metric)
            ratio = _ratio(cand_value.value, ref_value.value)
            rows.append(
                MetricRow(
                    task=task,
                    metric=metric,
                    higher_is_better=not lower,
                    reference=ref_value.value,
                    candidate=cand_value.value,
                    ratio=ratio,
                    retention=_ratio(1.0, ratio) if lower else ratio,
                    retention_ci=retention_interval(ref_samples, cand_samples, task, metric, seed),
                    vs_reference=vs_ref.get((task, metric)),
                    ablation=_value(ablation, task, metric),
                    gain=gains.get((task, metric)),
                    quantized=_value(quantized, task, metric),
                )
            )
    return rows


def _value(report: ModelReport | None, task: str, metric: str) -> float | None:
    if report is None:
        return None
    m = report.metrics.get(task, {}).get(metric)
    return None if m is None else m.value


def _ratio(a: float, b: float) -> float:
    return a / b if b else (math.inf if a else 1.0)


def speed_ratios(ref: ModelReport, cand: ModelReport) -> tuple[float | None, float | None]:
    """(latency speed-up, throughput speed-up) of the candidate over the reference."""
    if ref.speed is None or cand.speed is None:
        return None, None
    return (
        round(ref.speed.latency_ms / cand.speed.latency_ms, 3),
        round(cand.speed.throughput / ref.speed.throughput, 3),
    )


# ------------------------------------------------------------------------- HTML


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if abs(x) >= 1e5:
        return f"{x:.3e}"
    return f"{x:.{digits}g}"


def _cell(x: Any) -> str:
    return f"<td>{html.escape(str(x))}</td>"


def _models_table(models: list[ModelReport]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("model", "parameters", "size (MB)", "layers", "latency (ms)", "throughput")
    )
    body = []
    for m in models:
        speed = m.speed
        body.append(
            "<tr>"
            + _cell(f"{m.role}: {m.name}")
            + _cell(f"{m.parameters:,}")
            + _cell(_fmt(m.size_mb))
            + _cell("" if m.layers is None else m.layers)
            + _cell(f"{_fmt(speed.latency_ms)} (p90 {_fmt(speed.latency_p90_ms)})" if speed else "")
            + _cell(f"{_fmt(speed.throughput)} {speed.throughput_unit}" if speed else "")
            + "</tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _rows_table(rows: list[MetricRow], ref: str, cand: str, extra: bool) -> str:
    cols = ["task", "metric", ref, cand, "retention", "95% CI", f"{cand} − {ref} (p)"]
    if extra:
        cols += ["without teacher", "gain (95% CI, p)", "int8"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in rows:
        ci = f"[{_fmt(r.retention_ci[0])}, {_fmt(r.retention_ci[1])}]" if r.retention_ci else ""
        vs = (
            f"{_fmt(r.vs_reference.diff)} (p={r.vs_reference.p_value:.3g})"
            if r.vs_reference
            else ""
        )
        cells = [r.task, r.metric, _fmt(r.reference), _fmt(r.candidate), _fmt(r.retention, 3)]
        cells += [ci, vs]
        if extra:
            gain = (
                f"{_fmt(r.gain.diff)} [{_fmt(r.gain.ci_low)}, {_fmt(r.gain.ci_high)}], "
                f"p={r.gain.p_value:.3g}"
                if r.gain
                else ""
            )
            cells += [_fmt(r.ablation), gain, _fmt(r.quantized)]
        body.append("<tr>" + "".join(_cell(c) for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_STYLE = (
    "<style>.ws-distill table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}"
    ".ws-distill th,.ws-distill td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    ".ws-distill th{background:#f3f3f3}.ws-distill td:first-child{text-align:left}"
    ".ws-distill .summary{font-size:1.05em}</style>"
)


def _tradeoff_svg(models: list[ModelReport], rows: list[MetricRow], selected: str) -> str:
    """Latency against the main metric, one point per model (inline SVG; empty without
    matplotlib or without both numbers)."""
    head = next((r for r in rows if r.metric in headline_metrics()), None)
    if head is None:
        return ""
    points = [
        (m.role, m.speed.latency_ms, m.metrics[head.task][head.metric].value)
        for m in models
        if m.speed is not None and head.metric in m.metrics.get(head.task, {})
    ]
    if len(points) < 2:
        return ""
    try:
        from whetstone.plots import tradeoff_plot

        svg = tradeoff_plot(points, "latency, ms (batch 1)", f"{head.task} {head.metric}", selected)
    except (ImportError, WhetstoneError):
        return ""
    return f"<figure>{svg}</figure>"


def html_section(result: DistillResult | QuantizeResult) -> str:
    """A self-contained HTML fragment (inline style, no scripts, no external files)."""
    if isinstance(result, DistillResult):
        title = "Distillation"
        models = [result.teacher, result.student]
        models += [m for m in (result.ablation, result.quantized) if m is not None]
        ref, cand = "teacher", "student"
        extra = result.ablation is not None or result.quantized is not None
        params = result.parameter_ratio
        detail = (
            f"{html.escape(result.task_type)}, {html.escape(result.mode)} mode, "
            f"{result.training.steps} steps in {_fmt(result.training.seconds)} s"
        )
    else:
        title = "Dynamic int8 quantization"
        models = [result.original, result.quantized]
        ref, cand, extra, params = "original", "int8", False, 1.0
        detail = html.escape(result.task_type)
    summary = (
        f"{cand}: {_fmt(result.size_ratio, 3)}× the size on disk, "
        f"{_fmt(params, 3)}× the parameters, "
        f"{_fmt(result.speedup_latency, 3)}× faster (latency), "
        f"{_fmt(result.speedup_throughput, 3)}× the throughput"
    )
    retained = [
        f"{html.escape(r.task)} {html.escape(r.metric)}: {_fmt(r.retention, 3)}"
        for r in result.rows
        if r.metric in headline_metrics()
    ]
    parts = [
        f'<section class="ws-distill">{_STYLE}<h2>{title}</h2>',
        f"<p>{detail}; measured on {html.escape(str(result.machine.get('cpu', '')))} "
        f"({result.created_at:%Y-%m-%d %H:%M} UTC).</p>",
        f'<p class="summary">{summary}. Retention: '
        + ("; ".join(retained) or "no task evaluated")
        + ".</p>",
        _models_table(models),
        _rows_table(result.rows, ref, cand, extra) if result.rows else "",
        _tradeoff_svg(models, result.rows, cand),
        "</section>",
    ]
    return "".join(parts)
