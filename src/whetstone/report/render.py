"""Turn a gathered `Report` into one self-contained HTML file and a Markdown summary."""

from __future__ import annotations

import os
import re
import tempfile
from datetime import UTC, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whetstone.errors import WhetstoneError, missing_extra
from whetstone.report.ci import checks_markdown
from whetstone.report.itemwise import STATUS_HELP, STATUSES, ItemComparison, page_data
from whetstone.report.model import Report
from whetstone.report.tables import check_rows, comparison_rows

if TYPE_CHECKING:
    from whetstone.evaluate.compare import Comparison
    from whetstone.evaluate.gate import GateResult

#: (section id, title, text when empty) of the sections other steps fill.
STEP_SECTIONS = [
    ("feedback", "Feedback", "No feedback campaign is part of this report."),
    ("diagnosis", "Error analysis", "No error analysis is part of this report."),
    ("audit", "Training data audit", "No training data was audited."),
    ("optimization", "Optimization", "No optimization ran (fine-tuning, search, distillation)."),
]
# Anything a browser would fetch by itself: scripts, styles, images, frames, CSS imports.
_REMOTE = re.compile(
    r"""<(?:script|img|iframe|link|source|video|audio|embed)\b[^>]*?\b(?:src|href)\s*=\s*["']?"""
    r"""(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def _version() -> str:
    try:
        return metadata.version("whetstone")
    except metadata.PackageNotFoundError:
        return "dev"


def fmt(x: float | int | str | None) -> str:
    """A number with four significant digits (integers in full)."""
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, int) or (float(x).is_integer() and abs(x) >= 1e4):
        return f"{int(x):,}"
    return f"{x:.4g}"


def signed(x: float) -> str:
    """A difference with its sign."""
    return f"{x:+.4g}"


def nav(report: Report) -> list[tuple[str, str]]:
    """The section links at the top of the page."""
    items = [("summary", "Summary"), ("evaluation", "Evaluation"), ("calibration", "Calibration")]
    items += [("confusion", "Confusion")] + [(sid, title) for sid, title, _ in STEP_SECTIONS]
    if report.kind == "pipeline":
        items += [("comparison", "Before/after"), ("gate", "Gate")]
    return [*items, ("examples", "Examples")]


def _template(name: str) -> tuple[Any, str]:
    """A template of the report folder and the shared stylesheet."""
    try:
        import jinja2
    except ImportError as err:
        raise missing_extra("jinja2", "report") from err
    folder = resources.files("whetstone.report") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(name), (folder / "report.css").read_text(encoding="utf-8")


def _self_contained(page: str) -> str:
    """The page, after checking that nothing in it loads from the network."""
    remote = _REMOTE.search(page)
    if remote:
        raise WhetstoneError(
            f"the report would load something from the network ({remote.group(0)[:60]!r}); "
            "expected a self-contained page"
        )
    return page


def _common() -> dict[str, Any]:
    return {
        "fmt": fmt,
        "signed": signed,
        "version": _version(),
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_html(report: Report) -> str:
    """The report as one HTML document with inline CSS and SVG (no network needed)."""
    template, css = _template("report.html.j2")
    page = template.render(
        r=report, css=css, nav=nav(report), step_sections=STEP_SECTIONS, **_common()
    )
    return _self_contained(page)


def render_items_html(
    cmp: Comparison, items: ItemComparison, gate: GateResult | None, *, kept_same: bool
) -> str:
    """Two runs item by item as one self-contained page: the verdicts, the counts per status
    and the items that differ, filterable by task, status, slice and metric."""
    from markupsafe import Markup

    template, css = _template("items.html.j2")
    page = template.render(
        title=f"{cmp.run_b} against {cmp.run_a}, item by item",
        subtitle=f"A (baseline) = run {cmp.run_a} · B (candidate) = run {cmp.run_b}",
        css=css,
        gate=gate,
        checks=check_rows(gate) if gate else [],
        level=f"{100 * cmp.confidence:g}%",
        comparison=comparison_rows(cmp),
        statuses=STATUSES,
        counts=items.counts,
        only=items.only,
        kept_same=kept_same,
        status_help=STATUS_HELP,
        data=Markup(page_data(items)),
        **_common(),
    )
    return _self_contained(page)


def _cell(
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    note: str | None = None,
) -> str:
    if value is None:
        return "–"
    if low is None and note:
        return f"{fmt(value)} (too few for an interval)"
    return fmt(value) + (f" [{fmt(low)}, {fmt(high)}]" if low is not None else "")


def _overview_markdown(report: Report) -> list[str]:
    header = ["model", "origin", *report.overview_columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report.overview:
        name = f"**{row.name}** ★" if row.selected else row.name
        cells = row.cells if not row.error else ["failed"] * len(row.cells)
        lines.append("| " + " | ".join([name, row.origin, *cells]) + " |")
    return [*lines, ""]


def _baseline_markdown(report: Report, per_task: int = 2) -> list[str]:
    """The first metrics of each task for the first model (the baseline), with intervals."""
    model = report.tables[0].models[0] if report.tables else ""
    lines = [f"| task | metric | {model} [95% CI] | n |", "|---|---|---|---|"]
    for t in report.tables:
        for metric, cells in t.rows[:per_task]:
            c = cells[0]
            lines.append(
                f"| {t.task} | {metric} | {_cell(c.value, c.low, c.high, c.note)} | {c.n or ''} |"
            )
    return [*lines, ""]


def _changes_markdown(report: Report) -> list[str]:
    """Per candidate, the metrics that changed significantly (paired tests, p < 0.05)."""
    lines = []
    for c in report.candidates:
        if c.error:
            lines.append(f"- {c.name}: failed: {c.error}")
            continue
        changed = [d for d in c.rows if d.verdict != "same"]
        text = ", ".join(
            f"{d.task}/{d.metric} {signed(d.diff)} [{fmt(d.low)}, {fmt(d.high)}] ({d.verdict})"
            for d in changed
        )
        lines.append(f"- {c.name}: {text or 'no significant change'}")
    return [*lines, ""] if lines else []


def render_markdown(report: Report, html_name: str | None = None) -> str:
    """A short Markdown summary (for a pull request or a chat): the headline, the gate, the
    models side by side, the significant changes, the baseline's main metrics."""
    lines = [f"# {report.title}", "", f"**{report.headline}**", ""]
    if report.gate_message:
        lines += [f"Gate ({report.verdict}): {report.gate_message}", ""]
        lines += checks_markdown(report.gate_rows, report.gate_level, report.gate_tests)
    if report.overview:
        lines += _overview_markdown(report)
        lines += ["Significant changes against the baseline (paired tests, 95% intervals):", ""]
        lines += _changes_markdown(report)
    lines += _baseline_markdown(report)
    lines += [f"- {k}: {v}" for k, v in report.facts]
    for sid, title, _ in STEP_SECTIONS:
        if report.steps.get(sid):
            lines.append(f"- {title}: " + ", ".join(s.title for s in report.steps[sid]))
    lines += [""] + [f"> {note}" for note in report.notes]
    if html_name:
        lines += ["", f"Full report with plots: {html_name}"]
    return "\n".join(lines).rstrip() + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
