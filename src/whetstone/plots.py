"""Plots shared by the report and the steps' HTML sections (matplotlib, returned as inline SVG).

Figures are built without pyplot (no global state, no display), text stays text in the SVG,
and every id inside a figure gets a figure-unique prefix so many figures can share one page.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whetstone.errors import missing_extra
from whetstone.evaluate.metrics import ECE_BINS

_counter = itertools.count()
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]


@dataclass
class Series:
    """One model's per-item confidences and whether each top answer was right."""

    label: str
    confidence: np.ndarray
    correct: np.ndarray


def _figure(width: float, height: float) -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as err:
        raise missing_extra("matplotlib", "report") from err
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "whetstone"
    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def to_svg(fig: Any) -> str:
    """The figure as an `<svg>` element with ids made unique on the page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    prefix = f"f{next(_counter)}-"
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    return svg


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin ((b/n, (b+1)/n], 0 in the first): mean confidence, accuracy, count.

    Empty bins hold NaN means and a zero count; the bins are those of the ECE metric.
    """
    conf = np.asarray(confidence, dtype=float)
    corr = np.asarray(correct, dtype=float)
    bins = np.digitize(conf, np.arange(1, n_bins) / n_bins, right=True)
    count = np.bincount(bins, minlength=n_bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=corr, minlength=n_bins) / count
    return mean_conf, accuracy, count.astype(int)


def reliability_diagram(series: Sequence[Series], title: str, n_bins: int = ECE_BINS) -> str:
    """Accuracy against confidence per bin for each model, with the diagonal and bin counts."""
    fig = _figure(4.6, 4.4)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    ax, hist = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    ax.plot([0, 1], [0, 1], ls="--", color="#888", lw=1, label="perfect calibration")
    width = 1.0 / n_bins / max(1, len(series))
    for i, s in enumerate(series):
        mean_conf, accuracy, count = reliability_bins(s.confidence, s.correct, n_bins)
        keep = count > 0
        color = PALETTE[i % len(PALETTE)]
        ax.plot(mean_conf[keep], accuracy[keep], marker="o", color=color, label=s.label)
        left = np.arange(n_bins) / n_bins + i * width
        hist.bar(left, count, width=width, align="edge", color=color, alpha=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    hist.set(xlim=(0, 1), xlabel="confidence (top probability)", ylabel="items")
    return to_svg(fig)


def confusion_heatmap(labels: Sequence[str], matrix: Sequence[Sequence[int]], title: str) -> str:
    """A confusion matrix (rows gold, columns predicted) with counts in the cells."""
    m = np.asarray(matrix, dtype=float)
    size = 1.4 + 0.55 * len(labels)
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1.0, float(m.max())))
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    top = m.max() or 1.0
    for (r, c), v in np.ndenumerate(m):
        ax.text(
            c,
            r,
            f"{int(v)}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if v > top / 2 else "black",
        )
    return to_svg(fig)


@dataclass
class Difference:
    """One paired difference (candidate - baseline) with its 95% interval."""

    label: str
    diff: float
    low: float
    high: float
    better: bool
    significant: bool


def difference_plot(rows: Sequence[Difference], title: str) -> str:
    """Paired differences with intervals, a panel per task (each on its own scale); green
    better, red worse, grey not significant."""
    groups: dict[str, list[Difference]] = {}
    for r in rows:
        groups.setdefault(r.label.split("/", 1)[0], []).append(r)
    heights = [len(g) + 0.8 for g in groups.values()]
    fig = _figure(6.0, 0.5 + 0.3 * sum(heights))
    axes = fig.subplots(len(groups), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (task, group) in zip(axes[:, 0], groups.items(), strict=True):
        for y, r in enumerate(reversed(group)):
            color = "#888" if not r.significant else ("#2e8b57" if r.better else "#c0392b")
            err = [[max(0.0, r.diff - r.low)], [max(0.0, r.high - r.diff)]]
            ax.errorbar(r.diff, y, xerr=err, fmt="o", color=color, capsize=3)
        ax.axvline(0, color="#444", lw=1)
        names = [r.label.split("/", 1)[-1] for r in reversed(group)]
        ax.set_yticks(range(len(group)), names, fontsize=8)
        ax.set_ylim(-0.7, len(group) - 0.3)
        ax.set_title(task, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=8)
    axes[0, 0].figure.suptitle(title, fontsize=10)
    axes[-1, 0].set_xlabel("candidate − baseline (95% interval)", fontsize=8)
    fig.subplots_adjust(hspace=0.9)
    return to_svg(fig)


def tradeoff_plot(
    points: Sequence[tuple[str, float, float]], x_label: str, y_label: str, selected: str | None
) -> str:
    """Candidates as points of (cost, quality), the selected one ringed."""
    fig = _figure(5.2, 3.6)
    ax = fig.add_subplot()
    for i, (name, x, y) in enumerate(points):
        ax.scatter([x], [y], color=PALETTE[i % len(PALETTE)], s=40, zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if name == selected:
            ax.scatter([x], [y], s=180, facecolors="none", edgecolors="#222", zorder=2)
    xs = [x for _, x, _ in points if x > 0]
    if xs and max(xs) / min(xs) > 20:  # costs spanning orders of magnitude
        ax.set_xscale("log")
    ax.set(xlabel=x_label, ylabel=y_label, title=f"{y_label} against {x_label}")
    ax.grid(alpha=0.3)
    return to_svg(fig)
