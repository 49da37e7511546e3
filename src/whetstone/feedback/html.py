"""The campaign summary as a self-contained HTML fragment (inline SVG, scoped styles, no
scripts, nothing loaded from elsewhere): embedded by the dashboard and by whole-loop reports."""

from __future__ import annotations

import functools
from typing import Any

from whetstone.errors import missing_extra
from whetstone.feedback.charts import IntervalRow, heatmap, interval_plot, stacked_bars
from whetstone.feedback.summary import CampaignSummary
from whetstone.records import MetricValue


@functools.cache
def environment() -> Any:
    """The Jinja2 environment of the feedback templates (autoescaping on)."""
    try:
        import jinja2
    except ImportError as exc:
        raise missing_extra("jinja2", "feedback") from exc
    return jinja2.Environment(
        loader=jinja2.PackageLoader("whetstone.feedback", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _row(label: str, m: MetricValue) -> IntervalRow:
    """A metric as a chart row, flagged when its interval was withheld."""
    return IntervalRow(label, m.value, m.ci_low, m.ci_high, m.too_few)


def _charts(s: CampaignSummary) -> dict[str, str]:
    """The SVG charts of a summary (empty strings where there is nothing to plot)."""
    out = {"ranking": "", "winrate": "", "likert": "", "thumbs": "", "alpha": ""}
    if s.ranking is not None:
        out["ranking"] = interval_plot(
            [
                IntervalRow(e.model, e.rating, e.ci_low, e.ci_high, e.too_few)
                for e in s.ranking.entries
            ],
            "Bradley-Terry rating with 95% bootstrap interval over items",
            fmt="{:.0f}",
            reference=1000.0,
        )
        out["winrate"] = heatmap(s.ranking.models, s.ranking.win_rate, "Win rate, row over column")
    likert = [(r.model, [lv.count for lv in r.likert]) for r in s.model_ratings if r.likert]
    if likert:
        out["likert"] = stacked_bars(likert, "Likert ratings per model", ["1", "2", "3", "4", "5"])
    thumbs = [r for r in s.model_ratings if r.thumbs_up is not None]
    if thumbs:
        out["thumbs"] = interval_plot(
            [_row(r.model, r.thumbs_up) for r in thumbs if r.thumbs_up is not None],
            "Thumbs-up share with 95% interval",
            lo=0.0,
            hi=1.0,
        )
    alphas = [a for a in s.agreement if a.krippendorff_alpha is not None]
    if alphas:
        out["alpha"] = interval_plot(
            [
                _row(a.question, a.krippendorff_alpha)
                for a in alphas
                if a.krippendorff_alpha is not None
            ],
            "Krippendorff's alpha with 95% bootstrap interval",
            lo=min(
                -0.2, *(a.krippendorff_alpha.ci_low or 0 for a in alphas if a.krippendorff_alpha)
            ),
            hi=1.0,
            reference=0.0,
        )
    return out


def render_html_section(summary: CampaignSummary, max_comments: int = 50) -> str:
    """The summary as an HTML ``<section>``: ranking, win rates, position bias, ratings with
    intervals, agreement, participants and comments, every user-given text escaped."""
    from markupsafe import Markup

    charts = {k: Markup(v) for k, v in _charts(summary).items()}
    template = environment().get_template("summary_section.html")
    return str(template.render(s=summary, charts=charts, max_comments=max_comments))
