"""HTML fragments of a fine-tune and of a study, for the whole-loop report.

`render_html_section(result)` returns one self-contained ``<section>``: tables, and plots drawn
with matplotlib as inline SVG (no scripts, no external files).
"""

from __future__ import annotations

import html
import io
import itertools
import math
import re
import uuid
from collections.abc import Sequence
from typing import Any

from whetstone.errors import missing_extra
from whetstone.evaluate.compare import Comparison
from whetstone.optimize.results import FinetuneResult, StudyResult

_ids = itertools.count()
STYLE = (
    "<style>.ws-opt table{border-collapse:collapse;margin:.5em 0}"
    ".ws-opt td,.ws-opt th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    ".ws-opt th{background:#f3f3f3}.ws-opt td.l,.ws-opt th.l{text-align:left}"
    ".ws-opt .sig{font-weight:bold}.ws-opt figure{display:inline-block;margin:0 1em 1em 0}"
    "</style>"
)


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return html.escape(str(x))
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.4e}"


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    left: int = 1,
    bold: Sequence[bool] | None = None,
) -> str:
    """An HTML table; the first ``left`` columns align left; ``bold`` marks rows."""

    def cell(tag: str, i: int, value: str) -> str:
        return f"<{tag} class='l'>{value}</{tag}>" if i < left else f"<{tag}>{value}</{tag}>"

    head = "".join(cell("th", i, html.escape(h)) for i, h in enumerate(header))
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = ""
    for r, row in enumerate(rows):
        mark = " class='sig'" if bold and bold[r] else ""
        body += f"<tr{mark}>" + "".join(cell("td", i, _fmt(c)) for i, c in enumerate(row)) + "</tr>"
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _figure() -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise missing_extra("matplotlib", "report") from exc
    fig = Figure(figsize=(5.2, 3.0), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _svg(fig: Any, caption: str) -> str:
    """The figure as inline SVG (text kept as text, ids unique within the page)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"ws-opt-{next(_ids)}"}):
        fig.tight_layout()
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = _unique_ids(svg[svg.index("<svg") :], f"ws-{uuid.uuid4().hex[:8]}-")
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _unique_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and every reference to one) so several plots share a page safely."""
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', svg)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)


def comparison_html(cmp: Comparison | None, a: str = "base", b: str = "tuned") -> str:
    """Paired differences as a table; rows with p < 0.05 in bold."""
    if cmp is None:
        return ""
    rows = [
        [m.task, m.metric, m.a, m.b, m.diff, f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]", m.p_value]
        for m in cmp.metrics
    ]
    rows = [[*row, m.test, m.n] for row, m in zip(rows, cmp.metrics, strict=True)]
    header = ["task", "metric", a, b, f"{b} − {a}", "95% CI", "p", "test", "n"]
    table = _table(header, rows, 2, bold=[m.p_value < 0.05 for m in cmp.metrics])
    caption = (
        f"<p>Paired on the same items: run {html.escape(cmp.run_b)} ({b}) minus run "
        f"{html.escape(cmp.run_a)} ({a}); McNemar's exact test for 0/1 metrics, a paired "
        "bootstrap otherwise; bold: p &lt; 0.05.</p>"
    )
    return caption + table


# --------------------------------------------------------------------------- fine-tune


def _history_plot(history: list[dict[str, Any]], key: str, label: str) -> str:
    points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
    if not points:
        return ""
    fig, ax = _figure()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    return _svg(fig, label + " during training")


def finetune_html(result: FinetuneResult) -> str:
    """A fine-tune: what was trained, its curves, and the paired comparison with the base."""
    t = result.training
    facts: list[list[Any]] = [
        ["base model", t.base_model],
        ["method", f"{t.method} ({t.task_type})"],
        ["training task", f"{t.train_task} ({t.train_examples} examples)"],
        ["parameters trained", f"{t.trainable_parameters:,} of {t.total_parameters:,}"],
        ["steps / epochs", f"{t.steps} / {t.epochs:.3g}"],
        ["training time", f"{t.train_seconds:.1f} s"],
        ["examples seen", t.train_samples],
        ["model", t.model_path],
    ]
    if t.monitor:
        stop = ", stopped early" if t.stopped_early else ""
        facts.append([f"best {t.monitor}", f"{_fmt(t.best_metric)} at step {t.best_step}{stop}"])
    plots = _history_plot(t.history, "loss", "training loss")
    if t.monitor:
        plots += _history_plot(t.history, f"eval_{t.monitor}", t.monitor)
    return (
        f"<section class='ws-opt ws-finetune'>{STYLE}"
        f"<h2>Fine-tune {html.escape(result.name)}</h2>"
        + _table(["", ""], facts, 2)
        + plots
        + comparison_html(result.comparison)
        + "</section>"
    )


# --------------------------------------------------------------------------- study


def _history_svg(result: StudyResult) -> str:
    fig, ax = _figure()
    done = [t for t in result.trials if t.state == "COMPLETE" and t.values]
    if not done:
        return ""
    xs = [t.number for t in done]
    ys = [t.values[0] for t in done if t.values]
    ax.scatter(xs, ys, s=14, label="complete")
    sign = 1.0 if result.directions[0] == "maximize" else -1.0
    best, line = -math.inf, []
    for y in ys:
        best = max(best, sign * y)
        line.append(sign * best)
    ax.step(xs, line, where="post", color="C1", label="best so far")
    pruned = [t for t in result.trials if t.state == "PRUNED" and t.intermediate]
    if pruned:
        last = [t.intermediate[max(t.intermediate)] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="C3", s=14, label="pruned")
    if result.base_values:
        ax.axhline(result.base_values[0], color="grey", ls="--", lw=1, label="base")
    ax.set_xlabel("trial")
    ax.set_ylabel(result.objectives[0])
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _svg(fig, "optimization history")


def _intermediate_svg(result: StudyResult) -> str:
    curves = [t for t in result.trials if t.intermediate and result.pruner != "wilcoxon"]
    if not curves:
        return ""
    fig, ax = _figure()
    for t in curves:
        steps = sorted(t.intermediate)
        style = "--" if t.state == "PRUNED" else "-"
        ax.plot(steps, [t.intermediate[s] for s in steps], style, lw=1, alpha=0.8)
    ax.set_xlabel("evaluation")
    ax.set_ylabel(result.objectives[0])
    ax.grid(alpha=0.3)
    return _svg(fig, "intermediate values (dashed: pruned)")


def _importance_svg(objective: str, imp: dict[str, float]) -> str:
    if not imp:
        return ""
    fig, ax = _figure()
    items = sorted(imp.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in items], [v for _, v in items], color="C0")
    ax.set_xlabel("importance (fANOVA)")
    return _svg(fig, f"parameter importances for {objective}")


def study_html(result: StudyResult) -> str:
    """A study: history, importances, the best trials and the best model against the base."""
    states: dict[str, int] = {}
    for t in result.trials:
        states[t.state] = states.get(t.state, 0) + 1
    compute = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(result.total_compute.items()))
    objectives, directions = result.objectives, result.directions
    facts: list[list[Any]] = [
        ["trainer", result.trainer],
        [
            "objectives",
            ", ".join(f"{o} ({d})" for o, d in zip(objectives, directions, strict=True)),
        ],
        ["sampler / pruner", f"{result.sampler} / {result.pruner}"],
        ["trials", ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))],
        ["compute spent", compute],
        ["storage", result.storage],
    ]
    best = [t for t in result.trials if t.number in result.best_trials]
    params = sorted({k for t in result.trials for k in t.params})
    top = sorted(
        (t for t in result.trials if t.state == "COMPLETE" and t.values),
        key=lambda t: (-1 if result.directions[0] == "maximize" else 1) * (t.values or [0])[0],
    )[:10]
    trial_rows = [
        [t.number, *(t.values or []), *(t.params.get(p) for p in params), "yes" if t.kept else ""]
        for t in top
    ]
    plots = _history_svg(result) + _intermediate_svg(result)
    plots += "".join(_importance_svg(o, imp) for o, imp in result.importances.items())
    note = f"<p>{html.escape(result.importance_note)}</p>" if result.importance_note else ""
    best_line = ""
    if best:
        best_line = (
            f"<p>Best trial {best[0].number}: "
            + ", ".join(f"{html.escape(k)} = {_fmt(v)}" for k, v in best[0].params.items())
            + f"; model {html.escape(str(result.best_model))}</p>"
        )
    return (
        f"<section class='ws-opt ws-study'>{STYLE}"
        f"<h2>Study {html.escape(result.study_name)}</h2>"
        + _table(["", ""], facts, 2)
        + best_line
        + plots
        + note
        + "<h3>Best trials</h3>"
        + _table(["trial", *result.objectives, *params, "kept"], trial_rows, 0)
        + comparison_html(result.comparison, "base", "best")
        + "</section>"
    )


def render_html_section(result: FinetuneResult | StudyResult) -> str:
    """A self-contained HTML fragment for a fine-tune or a study."""
    if isinstance(result, FinetuneResult):
        return finetune_html(result)
    return study_html(result)
