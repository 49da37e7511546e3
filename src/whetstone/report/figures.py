"""The report's figures: reliability diagrams, confusion matrices, differences, trade-offs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from whetstone import plots
from whetstone.pipeline.records import PipelineResult
from whetstone.records import RunResult, SampleRecord
from whetstone.report.model import ComparisonRow, Figure
from whetstone.report.samples import by_task, correctness

#: At most this many models in one reliability diagram.
MAX_SERIES = 5


def calibration_figures(models: Sequence[tuple[str, list[SampleRecord]]]) -> list[Figure]:
    """A reliability diagram per task whose items carry a confidence (top probability)."""
    grouped = [(label, by_task(samples)) for label, samples in models]
    tasks = list(dict.fromkeys(t for _, by in grouped for t in by))
    figures = []
    for task in tasks:
        series = []
        for label, by in grouped[:MAX_SERIES]:
            items = by.get(task, [])
            key = correctness(items)
            if key is None or not all("confidence" in s.metrics for s in items):
                continue
            conf = np.array([s.metrics["confidence"] for s in items])
            correct = np.array([s.metrics[key] for s in items])
            series.append(plots.Series(label, conf, correct))
        if series:
            caption = ", ".join(
                f"{s.label}: ECE {_ece(s):.3f} over {len(s.confidence)} items" for s in series
            )
            figures.append(Figure(task, plots.reliability_diagram(series, task), caption))
    return figures


def _ece(s: plots.Series) -> float:
    mean_conf, accuracy, count = plots.reliability_bins(s.confidence, s.correct)
    keep = count > 0
    return float(np.sum(count[keep] * np.abs(accuracy[keep] - mean_conf[keep])) / count.sum())


def confusion_figures(runs: Sequence[tuple[str, RunResult]]) -> list[Figure]:
    """A confusion matrix per classification task and model."""
    figures = []
    for label, run in runs:
        for task, tr in run.tasks.items():
            cm = tr.tables.get("confusion_matrix")
            if not cm:
                continue
            out_of = sum(cm.get("out_of_labels", []))
            caption = f"{out_of} answers were outside the labels" if out_of else ""
            figures.append(
                Figure(
                    f"{task} · {label}",
                    plots.confusion_heatmap(cm["labels"], cm["matrix"], f"{task} · {label}"),
                    caption,
                )
            )
    return figures


def difference_figure(name: str, rows: list[ComparisonRow]) -> Figure | None:
    if not rows:
        return None
    diffs = [
        plots.Difference(
            f"{r.task}/{r.metric}",
            r.diff,
            r.low,
            r.high,
            r.verdict == "better",
            r.verdict != "same",
        )
        for r in rows
    ]
    return Figure(f"{name} − baseline", plots.difference_plot(diffs, f"{name} − baseline"))


def tradeoff_figure(result: PipelineResult) -> Figure | None:
    """Objective against latency (or size) for every evaluated model."""
    objective = result.selection.rule.objective if result.selection else None
    if objective is None:
        return None
    cost = "latency_ms" if "latency_ms" in result.baseline.metrics else "size_mb"
    points = [
        (c.name, c.metrics[cost], c.metrics[objective])
        for c in [result.baseline, *result.candidates]
        if cost in c.metrics and objective in c.metrics
    ]
    if len(points) < 2:
        return None
    selected = result.selection.selected if result.selection else None
    return Figure("trade-off", plots.tradeoff_plot(points, cost, objective, selected))
