"""Reports: one self-contained HTML file (inline SVG plots, no network) and a Markdown summary."""

from __future__ import annotations

from pathlib import Path

from whetstone.pipeline.records import PipelineResult
from whetstone.records import RunResult
from whetstone.report.build import build_report, resolve_target
from whetstone.report.model import Report
from whetstone.report.render import atomic_write, render_html, render_markdown
from whetstone.store import Store

__all__ = [
    "Report",
    "build_report",
    "render_html",
    "render_markdown",
    "resolve_target",
    "write_report",
]


def write_report(
    store: Store,
    target: PipelineResult | RunResult | str,
    out: str | Path,
    markdown: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the HTML report to `out` and the Markdown summary beside it (or to `markdown`)."""
    out = Path(out)
    md = Path(markdown) if markdown else out.with_suffix(".md")
    report = build_report(store, target)
    page = render_html(report)
    summary = render_markdown(report, out.name)
    atomic_write(out, page)
    atomic_write(md, summary)
    return out, md
