"""Inline SVG charts (no scripts, no external resources): interval plots, stacked bars, heat maps.

Every label is escaped, so model names and categories from users cannot inject markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 560
ROW = 26
LABEL_W = 150
LIKERT_COLORS = ("#c0392b", "#e67e22", "#bdc3c7", "#7fb3d5", "#2471a3")


@dataclass(frozen=True)
class IntervalRow:
    """A labelled estimate with its interval; ``too_few`` marks one withheld as dishonest."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    too_few: bool = False


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, cls: str = "") -> str:
    """An SVG text element with escaped content."""
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{klass}>'
        f"{escape(s)}</text>"
    )


def _svg(height: float, body: list[str], title: str) -> str:
    """An SVG element with an accessible title."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="{WIDTH}" height="{height:.0f}" role="img" aria-label="{escape(title)}" '
        f'font-family="system-ui, sans-serif"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values spanning [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = step * round(lo / step)
    ticks = []
    t = start
    while t <= hi + 1e-9:
        if t >= lo - 1e-9:
            ticks.append(round(t, 10))
        t += step
    return ticks


def interval_plot(
    rows: Sequence[IntervalRow],
    title: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    fmt: str = "{:.2f}",
    reference: float | None = None,
) -> str:
    """Points with horizontal interval whiskers, one row per label (a forest plot)."""
    values = [v for r in rows for v in (r.value, r.low, r.high) if v is not None]
    if reference is not None:
        values.append(reference)
    x_lo = lo if lo is not None else min(values, default=0.0)
    x_hi = hi if hi is not None else max(values, default=1.0)
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    pad = 0.04 * (x_hi - x_lo)
    x_lo, x_hi = x_lo - (pad if lo is None else 0), x_hi + (pad if hi is None else 0)
    plot_w = WIDTH - LABEL_W - 70
    top = 10
    height = top + ROW * len(rows) + 30

    def x(v: float) -> float:
        return LABEL_W + (v - x_lo) / (x_hi - x_lo) * plot_w

    body = []
    for t in _nice_ticks(x_lo, x_hi):
        body.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{height - 24}" '
            'stroke="#e5e7eb"/>'
        )
        body.append(_text(x(t), height - 10, fmt.format(t), "middle", 10))
    if reference is not None:
        body.append(
            f'<line x1="{x(reference):.1f}" x2="{x(reference):.1f}" y1="{top}" '
            f'y2="{height - 24}" stroke="#9ca3af" stroke-dasharray="4 3"/>'
        )
    for k, r in enumerate(rows):
        y = top + ROW * k + ROW / 2
        body.append(_text(LABEL_W - 8, y + 4, r.label, "end"))
        if r.low is not None and r.high is not None:
            body.append(
                f'<line x1="{x(r.low):.1f}" x2="{x(r.high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#2471a3" stroke-width="2"/>'
            )
        body.append(f'<circle cx="{x(r.value):.1f}" cy="{y:.1f}" r="4.5" fill="#1b4f72"/>')
        if r.too_few:
            body.append(_text(x(r.value) + 8, y - 5, "too few", "start", 9, "ws-too-few"))
        body.append(_text(WIDTH - 64, y + 4, fmt.format(r.value), "start", 11))
    return _svg(height, body, title)


def stacked_bars(
    rows: Sequence[tuple[str, Sequence[int]]],
    title: str,
    legend: Sequence[str],
    colors: Sequence[str] = LIKERT_COLORS,
) -> str:
    """Horizontal 100% stacked bars of counts, one row per label, with a legend."""
    plot_w = WIDTH - LABEL_W - 20
    top = 24
    height = top + ROW * len(rows) + 8
    body = []
    for k, name in enumerate(legend):
        lx = LABEL_W + k * (plot_w / max(1, len(legend)))
        body.append(f'<rect x="{lx:.1f}" y="4" width="10" height="10" fill="{colors[k]}"/>')
        body.append(_text(lx + 14, 13, name, "start", 10))
    for k, (label, counts) in enumerate(rows):
        y = top + ROW * k
        body.append(_text(LABEL_W - 8, y + ROW / 2 + 4, label, "end"))
        total = sum(counts)
        xpos = float(LABEL_W)
        for c, count in enumerate(counts):
            if total == 0 or count == 0:
                continue
            w = count / total * plot_w
            body.append(
                f'<rect x="{xpos:.1f}" y="{y + 3}" width="{w:.1f}" height="{ROW - 6}" '
                f'fill="{colors[c]}"><title>{escape(legend[c])}: {count}</title></rect>'
            )
            if w > 22:
                body.append(_text(xpos + w / 2, y + ROW / 2 + 4, str(count), "middle", 10))
            xpos += w
    return _svg(height, body, title)


def _heat(value: float) -> str:
    """A red (0) to white (0.5) to blue (1) color."""
    v = min(1.0, max(0.0, value))
    if v < 0.5:
        t = v / 0.5
        r, g, b = 192 + (255 - 192) * t, 57 + (255 - 57) * t, 43 + (255 - 43) * t
    else:
        t = (v - 0.5) / 0.5
        r, g, b = 255 - (255 - 36) * t, 255 - (255 - 113) * t, 255 - (255 - 163) * t
    return f"rgb({r:.0f},{g:.0f},{b:.0f})"


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float | None]], title: str) -> str:
    """A square matrix of shares (row vs column) with the values written in the cells."""
    n = len(labels)
    cell = min(56.0, (WIDTH - LABEL_W - 10) / max(1, n))
    top = 70
    height = top + cell * n + 10
    body = []
    for j, name in enumerate(labels):
        cx = LABEL_W + cell * j + cell / 2
        body.append(
            f'<text x="{cx:.1f}" y="{top - 6}" font-size="11" text-anchor="start" '
            f'transform="rotate(-40 {cx:.1f} {top - 6})">{escape(name)}</text>'
        )
    for i, name in enumerate(labels):
        y = top + cell * i
        body.append(_text(LABEL_W - 8, y + cell / 2 + 4, name, "end"))
        for j in range(n):
            v = matrix[i][j]
            x = LABEL_W + cell * j
            fill = "#f3f4f6" if v is None else _heat(v)
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell - 2:.1f}" height="{cell - 2:.1f}" '
                f'fill="{fill}"/>'
            )
            if v is not None:
                body.append(_text(x + cell / 2 - 1, y + cell / 2 + 4, f"{v:.2f}", "middle", 11))
    return _svg(height, body, title)
