"""audit.html in a real browser (Debian's Chromium via Playwright), with the network cut off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.audit.test_cli import EVAL, TRAIN, _fast_config
from whetstone.audit import audit

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.browser


def test_audit_page_renders_offline_without_errors(tmp_path: Path) -> None:
    if os.environ.get("WHETSTONE_TEST_BROWSER") != "1":
        pytest.skip("browser tests need WHETSTONE_TEST_BROWSER=1")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    audit(TRAIN, [EVAL], out_dir=tmp_path, config=_fast_config())
    errors: list[str] = []
    requests: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith("file://") else requests.append(r.url),
            )
            page.goto((tmp_path / "audit.html").as_uri(), wait_until="load")
            section = page.locator("section.ws-audit")
            assert section.count() == 1
            headings = page.locator("section.ws-audit h3").all_inner_texts()
            bars = page.evaluate(
                "[...document.querySelectorAll('section.ws-audit svg rect')]"
                ".filter(r => r.getBoundingClientRect().width > 1).length"
            )
            overflow = page.evaluate(
                "document.documentElement.scrollWidth > document.documentElement.clientWidth"
            )
            high = page.locator(".sev-high").first.evaluate("e => getComputedStyle(e).color")
            page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and requests == []
    for title in ("Recommendations", "Findings", "Labels (label)", "Duplicates",
                  "Contamination: support_intents.jsonl", "Personal data"):  # fmt: skip
        assert title in headings
    assert bars >= 5  # one bar per label at least
    assert not overflow
    assert high == "rgb(255, 255, 255)"
