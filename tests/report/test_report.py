"""Reports: sections, numbers against the run files and independent references, no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix
from typer.testing import CliRunner

from tests.pipeline.helpers import write_pipeline
from whetstone.cli.main import app
from whetstone.errors import WhetstoneError
from whetstone.evaluate.outputs import read_samples
from whetstone.pipeline import load_pipeline, run_pipeline
from whetstone.plots import reliability_bins
from whetstone.report import build_report, render_html, write_report
from whetstone.report import steps as report_steps
from whetstone.store import Store

PIPELINE_SECTIONS = [
    "summary",
    "evaluation",
    "calibration",
    "confusion",
    "feedback",
    "diagnosis",
    "audit",
    "optimization",
    "comparison",
    "gate",
    "examples",
]
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def pipeline_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Store, Path]:
    folder = tmp_path_factory.mktemp("report")
    path = write_pipeline(
        folder,
        limit=30,
        candidates=[{"name": "other", "model": "fake:3"}],
        select={"objective": "support_mc/acc_norm"},
        gate={"metrics": ["support_mc/acc"], "margin": 0.5, "candidates": "all"},
    )
    store = Store(f"sqlite:///{folder / 'db.sqlite'}")
    config = load_pipeline(path)
    result = run_pipeline(config, store=store)
    html, _ = write_report(store, result, folder / "report.html")
    return html, store, config.workdir_path


def svg_of(page: str, title: str) -> str:
    """The <svg> element of the figure whose title text is `title`."""
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        if f">{title}<" in svg:
            return svg
    raise AssertionError(f"no figure titled {title!r}")


def test_reliability_bins_agree_with_sklearn() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.2, 1.0, 500)
    correct = (rng.random(500) < conf).astype(float)
    mean_conf, accuracy, count = reliability_bins(conf, correct)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    keep = count > 0
    np.testing.assert_allclose(accuracy[keep], prob_true)
    np.testing.assert_allclose(mean_conf[keep], prob_pred)
    assert count.sum() == 500


def test_pipeline_report_has_every_section_and_needs_no_network(
    pipeline_report: tuple[Path, Store, Path],
) -> None:
    html, _, _ = pipeline_report
    page = html.read_text(encoding="utf-8")
    for section in PIPELINE_SECTIONS:
        assert f'<section id="{section}">' in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<metadata>" not in page
    assert "<script" not in page
    assert page.count("<svg") >= 4  # calibration x2, confusion x2, differences, trade-off
    assert oct(html.stat().st_mode & 0o777) == "0o644"


def test_confusion_matrix_in_the_report_is_sklearn_on_the_samples(
    pipeline_report: tuple[Path, Store, Path],
) -> None:
    html, _, workdir = pipeline_report
    page = html.read_text(encoding="utf-8")
    samples = [
        s for s in read_samples(workdir / "eval" / "baseline") if s.task == "support_intents"
    ]
    labels = samples[0].extra["labels"]
    expected = confusion_matrix(
        [s.gold for s in samples], [s.prediction for s in samples], labels=labels
    )
    svg = svg_of(page, "support_intents · baseline")
    cells = [int(t) for t in re.findall(r">\s*(\d+)\s*</text>", svg)]
    assert cells == expected.ravel().tolist()


def test_metric_tables_show_results_json_with_intervals(
    pipeline_report: tuple[Path, Store, Path],
) -> None:
    html, _, workdir = pipeline_report
    page = html.read_text(encoding="utf-8")
    results = json.loads((workdir / "eval" / "other" / "results.json").read_text())
    for task, tr in results["tasks"].items():
        for metric, m in tr["metrics"].items():
            if m["ci_low"] is None:
                continue
            shown = (
                f'{m["value"]:.4g} <span class="ci">[{m["ci_low"]:.4g}, {m["ci_high"]:.4g}]</span>'
            )
            assert shown in page, (task, metric)


def test_ece_in_captions_matches_the_run_metric(pipeline_report: tuple[Path, Store, Path]) -> None:
    html, _, workdir = pipeline_report
    page = html.read_text(encoding="utf-8")
    results = json.loads((workdir / "eval" / "baseline" / "results.json").read_text())
    ece = results["tasks"]["support_mc"]["metrics"]["ece"]["value"]
    assert re.search(rf"baseline: ECE {ece:.3f} over 30 items", page)


def test_markdown_summary(pipeline_report: tuple[Path, Store, Path]) -> None:
    html, _, workdir = pipeline_report
    md = html.with_suffix(".md").read_text(encoding="utf-8")
    results = json.loads((workdir / "eval" / "baseline" / "results.json").read_text())
    acc = results["tasks"]["support_mc"]["metrics"]["acc"]
    assert md.startswith("# whetstone · pipeline loop")
    assert "Selected:" in md and "Gate (" in md
    # the gate's checks with their margin and verdict, in the summary and the page
    page = html.read_text(encoding="utf-8")
    row = re.search(r"\| [^|]+ \| support_mc/acc \|(?: [^|]* \|){7} (\d+) \| (\w+) \|", md)
    assert row is not None and row[2] in ("pass", "fail", "inconclusive"), md
    assert "| 0.5 |" in md and f'<span class="badge {row[2]}">{row[2]}</span>' in page
    interval = f"{acc['value']:.4g} [{acc['ci_low']:.4g}, {acc['ci_high']:.4g}]"
    assert f"| support_mc | acc | {interval} | 30 |" in md
    assert "| model | origin | support_mc/acc_norm | support_mc/acc | latency_ms |" in md
    assert "report.html" in md


def test_report_of_a_single_run_from_the_cli(tmp_path: Path) -> None:
    from whetstone.data import examples_dir

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    runner = CliRunner()
    ev = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            "fake",
            "-t",
            str(examples_dir() / "suite.yaml"),
            "--limit",
            "10",
            "--db",
            db,
            "--out",
            str(tmp_path / "run"),
        ],
        env=ENV,
    )
    assert ev.exit_code == 0, ev.output
    run_id = json.loads((tmp_path / "run" / "results.json").read_text())["run_id"]
    out = tmp_path / "r.html"
    rep = runner.invoke(app, ["report", run_id[:6], "--out", str(out), "--db", db], env=ENV)
    assert rep.exit_code == 0, rep.output
    page = out.read_text(encoding="utf-8")
    for section in ("summary", "evaluation", "calibration", "confusion", "examples"):
        assert f'<section id="{section}">' in page
    assert '<section id="gate">' not in page  # a run has no gate
    wrong = [s for s in read_samples(tmp_path / "run") if s.metrics.get("acc") == 0]
    assert f"support_mc · {wrong[0].id}" in page
    bad = runner.invoke(app, ["report", "nosuchrun", "--out", str(out), "--db", db], env=ENV)
    assert bad.exit_code == 2 and "neither a pipeline file" in bad.stderr


def test_a_fragment_that_loads_from_the_network_is_refused(
    pipeline_report: tuple[Path, Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, store, _ = pipeline_report
    report = build_report(store, "loop")
    from whetstone.report.model import StepSection

    cdn = '<script src="https://cdn.example.com/plot.js"></script>'
    report.steps["audit"] = [StepSection("audit-0", "audit", cdn)]
    with pytest.raises(WhetstoneError, match="network"):
        render_html(report)
    assert report_steps.generic_html({"a": 1, "b": [1]}) == (
        '<table class="kv"><tr><th>a</th><td>1</td></tr></table>'
    )


@pytest.mark.browser
def test_report_opens_in_chromium_without_errors(
    pipeline_report: tuple[Path, Store, Path], tmp_path: Path
) -> None:
    from tests.report.browser import need_browser, open_report

    need_browser()
    html, _, _ = pipeline_report
    shot = tmp_path / "report.png"
    seen = open_report(html, shot)
    assert seen.errors == [] and seen.requests == []
    assert list(seen.sections) == PIPELINE_SECTIONS
    assert all(height > 20 for _, height in seen.sections.values())
    assert seen.sections["comparison"][0] == "Before and after"
    assert seen.svgs_drawn == html.read_text().count("<svg")
    assert shot.stat().st_size > 50_000


def test_a_metric_with_too_few_items_says_so_in_the_report_and_the_cli(tmp_path: Path) -> None:
    """Three documents are too few for a corpus-ratio interval: the report and the CLI table say
    so instead of printing a point interval."""
    from whetstone.data import examples_dir

    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    runner = CliRunner()
    args = ["evaluate", "--model", "fake", "-t", str(examples_dir() / "suite.yaml")]
    ev = runner.invoke(
        app, [*args, "--limit", "3", "--db", db, "--out", str(tmp_path / "run")], env=ENV
    )
    assert ev.exit_code == 0, ev.output
    assert "too few" in ev.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    ppl = next(t for t in results["tasks"].values() if t["kind"] == "perplexity")["metrics"]
    assert ppl["perplexity"]["too_few"] and ppl["perplexity"]["ci_low"] is None
    out = tmp_path / "r.html"
    rep = runner.invoke(app, ["report", results["run_id"], "--out", str(out), "--db", db], env=ENV)
    assert rep.exit_code == 0, rep.output
    assert "too few for an interval" in out.read_text(encoding="utf-8")
