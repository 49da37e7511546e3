"""The diagnosis as HTML: a self-contained fragment (inline CSS and SVG, no external resources)
that other reports embed, and a standalone page that wraps it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from whetstone.diagnose.schema import (
    CategoryResult,
    ClusterResult,
    ConfusedPair,
    DetectorResult,
    Diagnosis,
    Example,
    JudgeSummary,
    Share,
    SliceResult,
)

__all__ = ["render_html_page", "render_html_section"]

_CSS = """
.ws-diagnosis{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430}
.ws-diagnosis h2{font-size:1.35em;margin:1.2em 0 .4em}
.ws-diagnosis h3{font-size:1.1em;margin:1.4em 0 .3em;border-bottom:1px solid #dde3ea;
  padding-bottom:.2em}
.ws-diagnosis p.ws-lead{color:#4a5564;margin:.2em 0 .8em}
.ws-diagnosis table{border-collapse:collapse;width:100%;margin:.4em 0 1em}
.ws-diagnosis th,.ws-diagnosis td{text-align:left;padding:.3em .5em;
  border-bottom:1px solid #eef1f4;vertical-align:top}
.ws-diagnosis th{background:#f5f7f9;font-weight:600}
.ws-diagnosis td.num,.ws-diagnosis th.num{text-align:right;font-variant-numeric:tabular-nums;
  white-space:nowrap}
.ws-diagnosis .ws-muted{color:#6b7684}
.ws-diagnosis .ws-sig{color:#a4161a;font-weight:600}
.ws-diagnosis .ws-ns{color:#6b7684}
.ws-diagnosis details{margin:.2em 0}
.ws-diagnosis summary{cursor:pointer;color:#2557a7}
.ws-diagnosis .ws-ex{border-left:3px solid #dde3ea;padding:.2em .6em;margin:.3em 0;font-size:.92em}
.ws-diagnosis .ws-ex b{color:#4a5564;font-weight:600}
.ws-diagnosis .ws-terms{color:#4a5564}
.ws-diagnosis .ws-kpi{display:inline-block;margin:0 1.6em .4em 0}
.ws-diagnosis .ws-kpi b{display:block;font-size:1.4em}
"""


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or x != x:
        return "–"
    return f"{x:.{digits}g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _p(x: float) -> str:
    return "<1e-300" if x == 0 else (f"{x:.2g}" if x >= 1e-3 else f"{x:.1e}")


def _bar(s: Share, width: int = 120) -> str:
    """An inline SVG bar for a share, with its interval as a line."""
    w = lambda v: round(max(0.0, min(1.0, v)) * width, 1)  # noqa: E731
    return (
        f'<svg width="{width}" height="12" role="img" aria-label="{_pct(s.value)}">'
        f'<rect x="0" y="1" width="{width}" height="10" fill="#eef1f4"/>'
        f'<rect x="0" y="1" width="{w(s.value)}" height="10" fill="#5b8def"/>'
        f'<line x1="{w(s.ci_low)}" x2="{w(s.ci_high)}" y1="6" y2="6" stroke="#1d2430" '
        'stroke-width="1.5"/></svg>'
    )


def _ci(s: Share) -> str:
    """A share's interval, or "too few" (with the reason on hover)."""
    if s.too_few:
        return f'<span title="{escape(s.note or "")}">too few</span>'
    return f"[{_pct(s.ci_low)}, {_pct(s.ci_high)}]"


def _share_cells(s: Share) -> str:
    return (
        f'<td class="num">{_pct(s.value)}</td>'
        f'<td class="num ws-muted">{_ci(s)}</td><td>{_bar(s)}</td>'
    )


def _examples(examples: Sequence[Example], label: str = "examples") -> str:
    if not examples:
        return ""
    items = []
    for ex in examples:
        parts = [f"<b>{escape(ex.task)} · {escape(ex.item_id)}</b><br>{escape(ex.prompt)}"]
        parts.append(f"<br><b>answer:</b> {escape(ex.output) or '<i>(empty)</i>'}")
        if ex.reference is not None:
            parts.append(f"<br><b>expected:</b> {escape(ex.reference)}")
        if ex.comment:
            parts.append(f"<br><b>comment:</b> {escape(ex.comment)}")
        items.append(f'<div class="ws-ex">{"".join(parts)}</div>')
    return f"<details><summary>{len(examples)} {label}</summary>{''.join(items)}</details>"


def _table(head: Iterable[str], rows: Iterable[str], numeric: Iterable[str] = ()) -> str:
    nums = set(numeric)
    cells = "".join(f'<th class="num">{h}</th>' if h in nums else f"<th>{h}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_SHARE_HEAD = ("share", "95% CI", "")


def _categories(cats: Sequence[CategoryResult], uncategorized: int, judged: bool) -> str:
    head = ["category", "count", *_SHARE_HEAD, "by rules", *(["by judge"] if judged else [])]
    rows = []
    for c in cats:
        judge_cell = f'<td class="num">{c.by_judge}</td>' if judged else ""
        rows.append(
            f"<tr><td><b>{escape(c.name)}</b><br><span class='ws-muted'>"
            f"{escape(c.description)}</span>{_examples(c.examples)}</td>"
            f'<td class="num">{c.count}</td>{_share_cells(c.share)}'
            f'<td class="num">{c.by_rules}</td>{judge_cell}</tr>'
        )
    note = f'<p class="ws-muted">{uncategorized} failures match no category.</p>'
    return _table(head, rows, ["count", "share", "95% CI", "by rules", "by judge"]) + note


def _detectors(dets: Sequence[DetectorResult]) -> str:
    rows = []
    for d in dets:
        rate_ok = f"{d.successes}/{d.successes_checked}" if d.successes_checked else "–"
        rows.append(
            f"<tr><td><b>{escape(d.name)}</b><br><span class='ws-muted'>"
            f"{escape(d.description)}</span>{_examples(d.examples)}</td>"
            f'<td class="num">{d.failures}/{d.applicable}</td>{_share_cells(d.share)}'
            f'<td class="num">{rate_ok}</td></tr>'
        )
    head = ["detector", "fired / could judge", *_SHARE_HEAD, "fired on passing answers"]
    return _table(
        head, rows, ["fired / could judge", "share", "95% CI", "fired on passing answers"]
    )


def _judge(j: JudgeSummary) -> str:
    text = (
        f"<p>{escape(j.model)} ({escape(j.method)}) judged {j.judged} failures and assigned "
        f"{j.assigned}.</p>"
    )
    a = j.agreement
    if a is None:
        return text + '<p class="ws-muted">No human error tags to compare with.</p>'
    kappa = _fmt(a.cohen_kappa)
    if a.kappa_ci_low is not None:
        kappa += f" [{_fmt(a.kappa_ci_low)}, {_fmt(a.kappa_ci_high)}]"
    elif a.kappa_note:
        kappa += f' <span title="{escape(a.kappa_note)}">(interval: too few)</span>'
    text += (
        f"<p>Agreement with human tags on {a.n} failures: accuracy {_pct(a.accuracy)} "
        f"{_ci(a.accuracy_ci)}, Cohen's κ {kappa}.</p>"
    )
    rows = [
        f"<tr><td>{escape(name)}</td><td class='num'>{_fmt(m['precision'])}</td>"
        f"<td class='num'>{_fmt(m['recall'])}</td><td class='num'>{int(m['support'])}</td></tr>"
        for name, m in a.per_category.items()
    ]
    return text + _table(
        ["category", "precision", "recall", "human-tagged"],
        rows,
        ["precision", "recall", "human-tagged"],
    )


def _clusters(clusters: Sequence[ClusterResult]) -> str:
    rows = []
    for c in clusters:
        cats = ", ".join(f"{escape(k)} {v}" for k, v in c.top_categories.items())
        rows.append(
            f"<tr><td><b>{escape(c.name)}</b><br><span class='ws-terms'>"
            f"{escape(', '.join(c.terms))}</span>"
            f"{'<br><span class=ws-muted>categories: ' + cats + '</span>' if cats else ''}"
            f"{_examples(c.examples, 'closest to the centre')}</td>"
            f'<td class="num">{c.count}</td>{_share_cells(c.share)}</tr>'
        )
    return _table(["discovered category", "count", *_SHARE_HEAD], rows, ["count", "share"])


def _pairs(pairs: Sequence[ConfusedPair]) -> str:
    rows = [
        f"<tr><td>{escape(p.task)}</td><td>{escape(p.gold)}</td><td>{escape(p.predicted)}"
        f"{_examples(p.examples)}</td><td class='num'>{p.count}</td>{_share_cells(p.share_of_gold)}"
        "</tr>"
        for p in pairs
    ]
    head = ["task", "gold", "predicted as", "count", "of gold", "95% CI", ""]
    return _table(head, rows, ["count", "of gold", "95% CI"])


def _slices(slices: Sequence[SliceResult]) -> str:
    rows = []
    for i, s in enumerate(slices, 1):
        mark = (
            '<span class="ws-sig">yes</span>' if s.significant else '<span class="ws-ns">no</span>'
        )
        rows.append(
            f"<tr><td class='num'>{i}</td><td>{escape(s.description)}"
            f"{_examples(s.examples, 'failures')}</td>"
            f"<td class='num'>{s.size}</td><td class='num'>{s.failures}</td>"
            f"<td class='num'>{_pct(s.error_rate.value)}</td>"
            f"<td class='num ws-muted'>{_ci(s.error_rate)}</td><td>{_bar(s.error_rate)}</td>"
            f"<td class='num'>{_pct(s.rest_error_rate)}</td>"
            f"<td class='num'>{_fmt(s.effect_size, 2)}</td>"
            f"<td class='num'>{_p(s.p_value)}</td><td class='num'>{_p(s.p_adjusted)}</td>"
            f"<td>{mark}</td></tr>"
        )
    head = [
        "#",
        "slice",
        "size",
        "failures",
        "error rate",
        "95% CI",
        "",
        "rest",
        "effect h",
        "p",
        "BH-adjusted p",
        "significant",
    ]
    return _table(
        head,
        rows,
        ["#", "size", "failures", "error rate", "95% CI", "rest", "effect h", "p", "BH-adjusted p"],
    )


def _cluster_k(d: Diagnosis) -> str:
    c = d.cluster_search
    if c is None:
        return "k by silhouette"
    if c.by == "silhouette":
        return f"k = {c.k} by the silhouette score, {c.silhouette:.2f}"
    return (
        f"k = {c.k} by the number of failures: no clear cluster structure, silhouette "
        f"{c.silhouette:.2f}"
    )


def render_html_section(diagnosis: Diagnosis) -> str:
    """The diagnosis as one self-contained HTML fragment (a <section> with its own styles)."""
    d = diagnosis
    inp = d.inputs
    fr = inp.failure_rate
    sources = ", ".join(
        [*(f"run {escape(r)}" for r in inp.runs), *(f"campaign {escape(c)}" for c in inp.campaigns)]
    )
    parts = [
        f'<section class="ws-diagnosis"><style>{_CSS}</style>',
        "<h2>Diagnosis: where the model fails</h2>",
        f'<p class="ws-lead">{sources or "observations"} · {escape(d.created_at.isoformat())}</p>',
        f'<div><span class="ws-kpi"><b>{inp.failures}</b>failures</span>'
        f'<span class="ws-kpi"><b>{inp.observations}</b>answers judged</span>'
        f'<span class="ws-kpi"><b>{_pct(fr.value)}</b>failure rate {_ci(fr)}</span></div>',
    ]
    if inp.tasks:
        rows = [
            f"<tr><td>{escape(t)}</td><td>{escape(str(i.get('kind', '')))}</td>"
            f"<td class='num'>{i.get('n', 0)}</td><td class='num'>{i.get('failures', 0)}</td>"
            f"<td>{escape(str(i.get('criterion', 'feedback')))}</td></tr>"
            for t, i in inp.tasks.items()
        ]
        parts.append(
            _table(
                ["task", "kind", "answers", "failures", "fails when"], rows, ["answers", "failures"]
            )
        )
    search = d.slice_search
    if search is not None:
        lead = (
            f"{search.tested} slices tested (single attribute values and pairs, at least "
            f"{search.min_size} items each); {search.significant} have a higher failure rate "
            f"than the rest at a false discovery rate of {_pct(search.fdr)} (Fisher's exact test, "
            + (
                "on counts divided by the design effect of items observed several times, "
                if search.clustered
                else ""
            )
            + "Benjamini-Hochberg)."
        )
    else:
        lead = ""
    parts += [
        "<h3>Weak slices</h3>",
        f'<p class="ws-lead">{lead}</p>',
        _slices(d.slices) if d.slices else '<p class="ws-muted">No slice to show.</p>',
        "<h3>Error categories</h3>",
        _categories(d.categories, d.uncategorized, d.judge is not None),
    ]
    if d.judge is not None:
        parts += ["<h3>LLM judge</h3>", _judge(d.judge)]
    if d.clusters:
        parts += [
            "<h3>Discovered categories</h3>",
            f'<p class="ws-lead">Failures grouped by their MiniLM embeddings (k-means, '
            f"{_cluster_k(d)}), named by their most distinctive terms (c-TF-IDF).</p>",
            _clusters(d.clusters),
        ]
    if d.confused_pairs:
        parts += ["<h3>Confused labels</h3>", _pairs(d.confused_pairs)]
    parts += ["<h3>Detectors</h3>", _detectors(d.detectors)]
    if d.notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in d.notes))
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html_page(diagnosis: Diagnosis) -> str:
    """A standalone HTML page around ``render_html_section``."""
    title = escape(f"whetstone diagnosis {diagnosis.key}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}'
        '</title></head><body style="max-width:1200px;margin:1em auto;padding:0 1em">\n'
        f"{render_html_section(diagnosis)}\n</body></html>\n"
    )
