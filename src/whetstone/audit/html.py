"""The audit as HTML: a self-contained fragment (inline CSS and SVG, no scripts, no external
resources) that reports embed, and a standalone page around it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from whetstone.audit.schema import (
    Audit,
    BiasSection,
    ContaminationSection,
    CoverageSection,
    DuplicateSection,
    Finding,
    GroupScore,
    Histogram,
    LabelIssueSection,
    LabelSection,
    PIISection,
    ScoreSplit,
    StatsSection,
)

#: Rows shown per table; audit.json has all of them.
ROWS = 25
CSS = """
.ws-audit{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1f2328;
line-height:1.45;max-width:1100px}
.ws-audit h2{font-size:1.35em;margin:1.2em 0 .4em}
.ws-audit h3{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #d0d7de;
padding-bottom:.2em}
.ws-audit table{border-collapse:collapse;margin:.4em 0 1em;font-size:.9em;width:100%}
.ws-audit th,.ws-audit td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;
vertical-align:top}
.ws-audit th{background:#f6f8fa}
.ws-audit td.num{text-align:right;font-variant-numeric:tabular-nums}
.ws-audit .cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.6em 0}
.ws-audit .card{border:1px solid #d0d7de;border-radius:6px;padding:.4em .8em;min-width:8em}
.ws-audit .card b{display:block;font-size:1.4em}
.ws-audit .sev{border-radius:4px;padding:0 .4em;font-size:.85em;color:#fff;white-space:nowrap}
.ws-audit .sev-high{background:#cf222e}.ws-audit .sev-medium{background:#bc4c00}
.ws-audit .sev-low{background:#6e7781}.ws-audit .sev-info{background:#8c959f}
.ws-audit .muted{color:#656d76;font-size:.9em}
.ws-audit .ids{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
.ws-audit svg{max-width:100%;height:auto}
"""


def render_html_section(audit: Audit) -> str:
    """The audit as one self-contained ``<section>`` (its own scoped style, no scripts)."""
    parts = [
        f'<section class="ws-audit" id="audit-{escape(audit.audit_id)}">',
        f"<style>{CSS}</style>",
        f"<h2>Training data audit: {escape(audit.train.name)}</h2>",
        _header(audit),
        _cards(audit),
        _recommendations(audit),
        _findings_table(audit.findings),
    ]
    if audit.stats is not None:
        parts.append(_stats(audit.stats))
    if audit.labels is not None:
        parts.append(_labels(audit.labels))
    if audit.duplicates is not None:
        parts.append(_duplicates(audit.duplicates))
    if audit.label_issues is not None:
        parts.append(_label_issues(audit.label_issues))
    parts.extend(_contamination(s) for s in audit.contamination)
    parts.extend(_coverage(s) for s in audit.coverage)
    if audit.bias is not None:
        parts.append(_bias(audit.bias))
    if audit.pii is not None:
        parts.append(_pii(audit.pii))
    if audit.notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(n)}</li>" for n in audit.notes))
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def render_page(audit: Audit) -> str:
    """A standalone HTML document around ``render_html_section``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>whetstone audit · {escape(audit.train.name)}</title></head>"
        f'<body style="margin:1.5em">{render_html_section(audit)}</body></html>\n'
    )


# --------------------------------------------------------------------------- pieces


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Sequence[int] = (),
    empty: str | None = None,
) -> str:
    rows = list(rows)
    if not rows and empty is not None:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            text = cell if isinstance(cell, _Raw) else escape(_fmt(cell))
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _more(total: int, shown: int) -> str:
    if total <= shown:
        return ""
    return f'<p class="muted">{shown} of {total:,} shown; audit.json lists all.</p>'


def _ids(ids: Sequence[str], n: int = 8) -> _Raw:
    shown = ", ".join(escape(i) for i in ids[:n])
    more = f" … (+{len(ids) - n})" if len(ids) > n else ""
    return _Raw(f'<span class="ids">{shown}{more}</span>')


def _sev(severity: str) -> _Raw:
    return _Raw(f'<span class="sev sev-{escape(severity)}">{escape(severity)}</span>')


def _header(a: Audit) -> str:
    evals = ", ".join(f"{e.name} ({e.n_records:,})" for e in a.evals) or "none"
    return (
        f'<p class="muted">{escape(a.train.path)} · {a.train.n_records:,} records · '
        f"{escape(a.train.format)} · text: {escape(', '.join(a.train.text_fields))}"
        f" · label: {escape(a.train.label_column or '(none)')} · eval sets: {escape(evals)} · "
        f"audit {escape(a.audit_id)} · {a.created_at:%Y-%m-%d %H:%M} UTC</p>"
    )


def _cards(a: Audit) -> str:
    by_sev = {s: sum(f.severity == s for f in a.findings) for s in ("high", "medium", "low")}
    cards = [
        ("records", f"{a.train.n_records:,}"),
        ("high", str(by_sev["high"])),
        ("medium", str(by_sev["medium"])),
        ("low", str(by_sev["low"])),
    ]
    if a.duplicates is not None:
        cards.append(("duplicate rows to drop", f"{len(a.duplicates.drop_ids):,}"))
    if a.label_issues is not None:
        cards.append(("likely label errors", f"{a.label_issues.n_issues:,}"))
    for c in a.contamination:
        cards.append((f"contaminated in {c.eval_name}", f"{c.share_contaminated:.1%}"))
    if a.pii is not None:
        cards.append(("records with PII", f"{a.pii.n_records:,}"))
    inner = "".join(
        f'<div class="card"><b>{escape(v)}</b><span class="muted">{escape(k)}</span></div>'
        for k, v in cards
    )
    return f'<div class="cards">{inner}</div>'


def _recommendations(a: Audit) -> str:
    if not a.recommendations:
        return "<h3>Recommendations</h3><p>No changes recommended.</p>"
    items = "".join(
        f"<li><b>{escape(r.title)}</b> ({escape(r.action)}): {escape(r.detail)}</li>"
        for r in a.recommendations
    )
    return f"<h3>Recommendations</h3><ol>{items}</ol>"


def _findings_table(findings: list[Finding]) -> str:
    counts: dict[str, list[Finding]] = {}
    for f in findings:
        counts.setdefault(f.kind, []).append(f)
    summary = _table(
        ["kind", "findings", "high", "medium", "low"],
        (
            [k, len(v), *(sum(f.severity == s for f in v) for s in ("high", "medium", "low"))]
            for k, v in counts.items()
        ),
        numeric=(1, 2, 3, 4),
    )
    rows = [
        [_sev(f.severity), f.kind, f.title, f.action, _ids(f.record_ids), _ids(f.eval_ids)]
        for f in findings[: ROWS * 4]
    ]
    table = _table(
        ["severity", "kind", "finding", "action", "records", "eval items"],
        rows,
        empty="No findings.",
    )
    return f"<h3>Findings</h3>{summary}{table}{_more(len(findings), len(rows))}"


def _bars(labels: Sequence[str], values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """A horizontal bar chart as inline SVG."""
    if not values:
        return ""
    top = max(values) or 1.0
    row, width, left = 20, 640, 170
    height = row * len(values) + 6
    bars = []
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = 3 + i * row
        w = (width - left - 70) * v / top
        bars.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" font-size="12">'
            f"{escape(label[:26])}</text>"
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}" fill="#0969da"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 14}" font-size="12">'
            f"{escape(fmt.format(v))}</text>"
        )
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        + "".join(bars)
        + "</svg>"
    )


def _histogram(h: Histogram, what: str) -> str:
    used = [i for i, c in enumerate(h.counts) if c]
    if not used:
        return ""
    span = range(used[0], used[-1] + 1)  # without the empty bins at either end
    labels = [f"{h.edges[i]:.0f}–{h.edges[i + 1]:.0f} {what}" for i in span]
    return _bars(labels, [float(h.counts[i]) for i in span])


def _stats(s: StatsSection) -> str:
    rows: list[list[Any]] = [
        ["rows", s.n_rows],
        ["records", s.n_records],
        ["empty", s.n_empty],
        ["malformed", s.n_malformed],
        ["repeated ids", s.n_duplicate_ids],
        ["vocabulary", s.vocabulary_size],
        ["type/token ratio", s.type_token_ratio],
    ]
    for name, ls in (("characters", s.chars), ("tokens", s.tokens), *s.fields.items()):
        if ls is not None:
            rows.append(
                [
                    f"{name}: mean / median / p5–p95 / max",
                    f"{ls.mean:.1f} / {ls.median:.0f} / {ls.p5:.0f}–{ls.p95:.0f} / {ls.max:.0f}",
                ]
            )
    if s.languages:
        rows.append(
            [
                f"languages (sample of {s.language_sample})",
                ", ".join(f"{k} {v:.1%}" for k, v in list(s.languages.items())[:6]),
            ]
        )
    top = ", ".join(f"{w} ({c:,})" for w, c in s.top_tokens[:15])
    hist = _histogram(s.token_histogram, "tokens") if s.token_histogram else ""
    return (
        f"<h3>Size and lengths</h3>{_table(['statistic', 'value'], rows, numeric=(1,))}"
        f'<p class="muted">Most frequent tokens: {escape(top)}</p>{hist}'
    )


def _labels(lab: LabelSection) -> str:
    chart = _bars([c.label for c in lab.classes], [float(c.count) for c in lab.classes])
    table = _table(
        ["label", "count", "share", "balanced weight", "oversample to"],
        (
            [c.label, c.count, f"{c.share:.1%}", c.weight, lab.oversample_to[c.label]]
            for c in lab.classes
        ),
        numeric=(1, 2, 3, 4),
    )
    shifts = ""
    if lab.shifts:
        shifts = _table(
            ["eval set", "items", "TVD", "chi²", "p", "labels unseen in training"],
            (
                [s.eval_name, s.n_eval, s.tvd, s.chi2, s.p_value, ", ".join(s.unseen_labels)]
                for s in lab.shifts
            ),
            numeric=(1, 2, 3, 4),
        )
    return (
        f"<h3>Labels ({escape(lab.column)})</h3><p>{lab.n_labeled:,} labeled, "
        f"{lab.n_missing:,} without a label; imbalance ratio {lab.imbalance_ratio:.2f}, "
        f"normalized entropy {lab.normalized_entropy:.3f}.</p>{chart}{table}{shifts}"
    )


def _duplicates(d: DuplicateSection) -> str:
    lsh = d.lsh
    head = (
        f"<h3>Duplicates</h3><p>{d.n_exact_groups:,} groups of exact duplicates "
        f"({d.n_exact_extra:,} extra copies); {d.n_near_pairs:,} near-duplicate pairs in "
        f"{d.n_near_groups:,} groups; {len(d.conflicts):,} with conflicting labels.</p>"
        f'<p class="muted">Near duplicates: character {lsh.ngram}-gram Jaccard ≥ '
        f"{lsh.threshold} (MinHash {lsh.num_perm} permutations, LSH {lsh.bands} bands × "
        f"{lsh.rows} rows; {lsh.candidates:,} candidates, {lsh.verified:,} verified).</p>"
    )
    conflicted = {tuple(g.ids) for g in d.conflicts}
    others = [g for g in [*d.exact_groups, *d.near_groups] if tuple(g.ids) not in conflicted]
    groups = [*d.conflicts, *others][:ROWS]
    table = _table(
        ["kind", "records", "labels", "min Jaccard", "text"],
        (
            [g.kind, _ids(g.ids), ", ".join(str(x) for x in g.labels), g.min_jaccard, g.preview]
            for g in groups
        ),
        numeric=(3,),
        empty="No duplicates.",
    )
    return head + table + _more(len(d.conflicts) + len(others), len(groups))


def _label_issues(s: LabelIssueSection) -> str:
    acc = s.oof_accuracy
    head = (
        f"<h3>Likely label errors</h3><p>{s.n_issues:,} of {s.n_records:,} records "
        f"(confident learning on {s.folds}-fold out-of-fold probabilities, {escape(s.features)}"
        f" + logistic regression; out-of-fold accuracy {acc.value:.3f} "
        f"[{acc.ci_low:.3f}, {acc.ci_high:.3f}], majority class {s.majority_baseline:.3f}).</p>"
    )
    table = _table(
        ["record", "given", "suggested", "label quality", "text"],
        ([i.id, i.given, i.suggested, i.quality, i.preview] for i in s.issues[:ROWS]),
        numeric=(3,),
        empty="No record was flagged.",
    )
    return head + table + _more(len(s.issues), min(ROWS, len(s.issues)))


def _group_ci(g: GroupScore) -> str:
    """A group's interval, or "too few" with the reason."""
    if g.too_few:
        return f"too few ({g.note})" if g.note else "too few"
    return f"[{_fmt(g.ci_low)}, {_fmt(g.ci_high)}]"


def _score_difference(s: ScoreSplit) -> str:
    """contaminated − clean with its interval and p-value (the interval flagged too few)."""
    if s.diff is None or s.p_value is None:
        return "no difference: one of the groups is empty"
    if s.too_few or s.ci_low is None or s.ci_high is None:
        return (
            f"contaminated − clean = {s.diff:+.4f} (interval: too few: {s.note}), "
            f"permutation p = {s.p_value:.3g}"
        )
    return (
        f"contaminated − clean = {s.diff:+.4f} [{s.ci_low:+.4f}, {s.ci_high:+.4f}], "
        f"permutation p = {s.p_value:.3g}"
    )


def _contamination(c: ContaminationSection) -> str:
    head = (
        f"<h3>Contamination: {escape(c.eval_name)}</h3><p>{c.n_contaminated:,} of "
        f"{c.n_checked:,} checked items contaminated ({c.share_contaminated:.1%}), "
        f"{c.n_partial:,} partly; {c.n_any:,} share at least one {c.ngram}-gram with training "
        f"({len(c.train_ids):,} training records involved).</p>"
    )
    score = ""
    if c.score is not None:
        s = c.score
        rows = [
            [name, g.n, g.value, _group_ci(g)]
            for name, g in (
                ("clean", s.clean),
                ("partial", s.partial),
                ("contaminated", s.contaminated),
            )
        ]
        diff = _score_difference(s)
        score = (
            f"<p>{escape(s.metric)} of run {escape(s.run_id)} on {escape(s.task)}: "
            f"{escape(diff)}</p>" + _table(["items", "n", s.metric, "95% CI"], rows, (1, 2))
        )
    table = _table(
        ["eval item", "coverage", "tokens", "n-gram", "training records", "text"],
        (
            [i.eval_id, f"{i.coverage:.0%}", i.n_tokens, i.ngram, _ids(i.train_ids), i.preview]
            for i in c.items[:ROWS]
        ),
        numeric=(1, 2, 3),
        empty="No eval item shares an n-gram with the training data.",
    )
    return head + score + table + _more(len(c.items), min(ROWS, len(c.items)))


def _coverage(c: CoverageSection) -> str:
    head = (
        f"<h3>Coverage: {escape(c.eval_name)}</h3><p>{len(c.far_items):,} of {c.n_eval:,} eval "
        f"items are farther from the nearest of {c.n_train:,} training examples than "
        f"{c.quantile:.0%} of training examples are from each other (cosine distance "
        f"&gt; {c.threshold:.3f}; median eval distance {c.eval_distance.median:.3f}, "
        f"training {c.train_distance.median:.3f}; {escape(c.encoder)}).</p>"
    )
    far = _table(
        ["eval item", "distance", "nearest training record", "text"],
        ([f.eval_id, f.distance, f.nearest_train_id, f.preview] for f in c.far_items[:ROWS]),
        numeric=(1,),
        empty="No eval item is far from the training data.",
    )
    topics = _table(
        ["topic", "gap", "eval items", "training", "eval share", "training share", "q"],
        (
            [
                ", ".join(t.terms),
                "yes" if t.gap else "",
                t.n_eval,
                t.n_train,
                f"{t.eval_share:.1%}",
                f"{t.train_share:.1%}",
                t.q_value,
            ]
            for t in c.topics[:ROWS]
        ),
        numeric=(2, 3, 4, 5, 6),
    )
    return head + far + _more(len(c.far_items), min(ROWS, len(c.far_items))) + topics


def _bias(b: BiasSection) -> str:
    groups = [g for g in b.groups if g.n_records]
    if not groups:
        return "<h3>Representation and bias</h3><p>No record mentions a listed group term.</p>"
    counts = _table(
        ["category", "group", "records", "share", "share in category"],
        (
            [g.category, g.group, g.n_records, f"{g.share:.2%}", f"{g.share_in_category:.1%}"]
            for g in groups
        ),
        numeric=(2, 3, 4),
    )
    strongest = sorted(b.label_associations, key=lambda a: -abs(a.npmi))[:ROWS]
    assoc = (
        "<p>Group–label associations (nPMI, Fisher's exact test, BH-adjusted q):</p>"
        + _table(
            ["group", "label", "nPMI", "records", "q"],
            ([f"{a.category}: {a.group}", a.target, a.npmi, a.count, a.q_value] for a in strongest),
            numeric=(2, 3, 4),
        )
        if strongest
        else "<p>No group is mentioned often enough to test its association with labels.</p>"
    )
    words: dict[str, list[str]] = {}
    for a in b.word_associations:
        words.setdefault(f"{a.category}: {a.group}", []).append(f"{a.target} ({a.npmi:.2f})")
    word_table = (
        _table(
            ["group", "words with the highest nPMI"],
            ([g, ", ".join(w)] for g, w in words.items()),
        )
        if words
        else ""
    )
    return f"<h3>Representation and bias</h3>{counts}{assoc}{word_table}"


def _pii(p: PIISection) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in p.counts.items())
    if not p.matches:
        return f"<h3>Personal data</h3><p>None found ({escape(', '.join(p.counts))}).</p>"
    table = _table(
        ["record", "kind", "value (masked)"], ([m.id, m.kind, m.masked] for m in p.matches[:ROWS])
    )
    return (
        f"<h3>Personal data</h3><p>{p.n_records:,} records; {escape(counts)}.</p>"
        + table
        + _more(len(p.matches), min(ROWS, len(p.matches)))
    )
