"""`whetstone compare A B --html`: item statuses against counts made directly with numpy, the
page's data safe inside a script element, and (in Chromium) filters over 100,000 items that show
what the data says, with hostile text drawn as text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.engine import evaluate
from whetstone.records import SampleRecord
from whetstone.report.itemwise import compare_items, item_status, key_metric, page_data
from whetstone.report.render import render_items_html

RUNNER = CliRunner()
HOSTILE = '</script><script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def _sample(task: str, i: int, metrics: dict[str, float], prediction: str = "x") -> SampleRecord:
    return SampleRecord(
        task=task,
        id=f"{task}-{i}",
        prompt=f"prompt {i}",
        prediction=prediction,
        gold="g",
        metrics=metrics,
    )


def _runs(n: int, seed: int = 0) -> tuple[list[SampleRecord], list[SampleRecord], dict]:
    """Two runs over a 0/1 task and a bits-per-byte task, with the raw arrays behind them."""
    rng = np.random.default_rng(seed)
    acc_a, acc_b = rng.random(n) < 0.6, rng.random(n) < 0.65
    same_text = rng.random(n) < 0.5
    bpb_a = rng.gamma(4.0, 0.25, n)
    bpb_b = np.where(rng.random(n) < 0.2, bpb_a, bpb_a + rng.normal(0, 0.1, n))
    a = [_sample("qa", i, {"exact_match": float(acc_a[i])}, "same") for i in range(n)]
    b = [
        _sample("qa", i, {"exact_match": float(acc_b[i])}, "same" if same_text[i] else "other")
        for i in range(n)
    ]
    a += [_sample("docs", i, {"bits_per_byte": bpb_a[i], "n_bytes": 10.0}) for i in range(n)]
    b += [_sample("docs", i, {"bits_per_byte": bpb_b[i], "n_bytes": 10.0}) for i in range(n)]
    raw = {"acc_a": acc_a, "acc_b": acc_b, "same_text": same_text, "bpb_a": bpb_a, "bpb_b": bpb_b}
    return a, b, raw


def test_statuses_match_counts_made_directly_from_the_arrays():
    a, b, raw = _runs(2000)
    items = compare_items(a, b)
    acc_a, acc_b, same_text = raw["acc_a"], raw["acc_b"], raw["same_text"]
    assert items.counts["qa"]["fixed"] == np.sum(~acc_a & acc_b)
    assert items.counts["qa"]["broken"] == np.sum(acc_a & ~acc_b)
    held = acc_a == acc_b
    assert items.counts["qa"]["changed"] == np.sum(held & ~same_text)
    assert items.counts["qa"]["same"] == np.sum(held & same_text)
    # bits per byte: lower is better, so a drop is "better"
    assert items.counts["docs"]["better"] == np.sum(raw["bpb_b"] < raw["bpb_a"])
    assert items.counts["docs"]["worse"] == np.sum(raw["bpb_b"] > raw["bpb_a"])
    assert items.counts["docs"]["same"] == np.sum(raw["bpb_b"] == raw["bpb_a"])
    # unchanged items are counted but not listed
    assert len(items.rows) == 4000 - items.total["same"]
    assert len(compare_items(a, b, keep_same=True).rows) == 4000


def test_the_key_metric_prefers_a_01_headline_and_skips_bookkeeping():
    mc = _sample("mc", 0, {"brier": 0.3, "acc": 1.0, "acc_norm": 0.0, "confidence": 0.9})
    docs = _sample("docs", 0, {"logprob": -3.0, "n_tokens": 4.0, "bits_per_byte": 1.2})
    gen = _sample("qa", 0, {"chrf": 30.0, "token_f1": 0.5, "exact_match": 0.0})
    assert [key_metric([s]) for s in (mc, docs, gen)] == ["acc", "bits_per_byte", "exact_match"]
    worse_brier = _sample("mc", 0, {"brier": 0.5, "acc": 1.0, "acc_norm": 0.0, "confidence": 0.9})
    assert item_status(mc, worse_brier, "acc") == "changed"  # acc held, another metric moved
    assert item_status(mc, mc, "acc") == "same"


def test_items_in_one_run_only_are_counted_apart():
    a, b, _ = _runs(50)
    items = compare_items(a, [s for s in b if s.id != "qa-3"] + [_sample("qa", 99, {})])
    assert items.only["qa"] == (1, 1)
    assert sum(items.counts["qa"].values()) == 49


def test_the_page_data_cannot_close_its_script_element():
    a = [_sample("qa", 0, {"exact_match": 0.0}, HOSTILE)]
    b = [_sample("qa", 0, {"exact_match": 1.0}, HOSTILE + "\u2028")]
    data = page_data(compare_items(a, b))
    assert "<" not in data and "\u2028" not in data
    assert json.loads(data)["rows"][0][5] == HOSTILE
    page = render_items_html(compare_samples(a, b), compare_items(a, b), None, kept_same=False)
    assert page.count("</script>") == 2  # the data element's and the code's own


def test_cli_writes_the_page_with_task_slices_and_gate_verdicts(tmp_path):
    db = f"sqlite:///{tmp_path}/w.db"
    mc = examples_dir() / "support_mc.yaml"
    first = evaluate("fake:0", [mc], db=db).result.run_id
    second = evaluate("fake:5", [mc], db=db).result.run_id
    out = tmp_path / "items.html"
    args = ["compare", first, second, "--db", db, "--html", str(out), "-t", str(mc)]
    result = RUNNER.invoke(app, [*args, "--margin", "acc=0.05"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    data = json.loads(re.search(r'id="item-data">(.*?)</script>', page, re.S).group(1))
    assert any(s.startswith("topic=") for s in data["slices"])  # a column of the task's data
    assert data["metrics"][0][0] == "acc"
    assert 'class="badge pass"' in page or 'class="badge inconclusive"' in page
    listed = len(data["rows"])
    RUNNER.invoke(app, [*args, "--all-items"])
    assert (
        len(
            json.loads(re.search(r'id="item-data">(.*?)</script>', out.read_text(), re.S).group(1))[
                "rows"
            ]
        )
        == 60
        >= listed
    )


def _browser_counts(page, **choices: str) -> int:
    for selector, value in choices.items():
        page.select_option(f"#f-{selector}", value)
    text = page.inner_text("#shown")
    return int(text.split(" of ")[0].replace(",", ""))


@pytest.mark.browser
def test_the_page_filters_100k_items_in_chromium(tmp_path: Path):
    from tests.report.browser import ARGS, CHROMIUM, need_browser

    need_browser()
    playwright = pytest.importorskip("playwright.sync_api")
    a, b, raw = _runs(50_000, seed=1)
    a[0].prompt, b[0].prediction = HOSTILE, HOSTILE
    items = compare_items(a, b)
    path = tmp_path / "items.html"
    path.write_text(render_items_html(compare_samples(a, b), items, None, kept_same=False))
    listed = len(items.rows)
    assert listed > 60_000
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_context(offline=True).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_selector("#items article")
            assert _browser_counts(page) == listed
            assert page.locator("#items article").count() == 50  # one page drawn, not 60,000
            assert _browser_counts(page, task="0") == sum(1 for r in items.rows if r[0] == 0)
            page.uncheck("input.f-status[value=changed]")
            assert (
                _browser_counts(page) == items.counts["qa"]["fixed"] + items.counts["qa"]["broken"]
            )
            page.check("input.f-status[value=changed]")
            assert _browser_counts(page, task="1", sort="worst") == np.sum(
                raw["bpb_b"] != raw["bpb_a"]
            )
            worst = page.locator("#items article").first.inner_text()
            worst_i = int(np.argmax(raw["bpb_b"] - raw["bpb_a"]))
            assert f"docs-{worst_i}" in worst
            page.select_option("#f-task", "-1")
            page.fill("#f-text", "qa-0")
            page.wait_for_function(
                "n => !document.getElementById('shown').textContent.startsWith(n)",
                arg=f"{listed:,} ",
            )
            assert page.inner_text("#shown").startswith("1 of")
            card = page.locator("#items article").first
            assert HOSTILE in card.inner_text()  # drawn as text
            assert page.evaluate("window.pwned === undefined")
            assert errors == []
        finally:
            browser.close()
