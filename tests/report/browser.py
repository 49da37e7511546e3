"""Open a report in Debian's Chromium through Playwright (never `playwright install`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def need_browser() -> None:
    """Skip unless browser tests are asked for and Chromium is installed."""
    if os.environ.get("WHETSTONE_TEST_BROWSER") != "1":
        pytest.skip("browser tests need WHETSTONE_TEST_BROWSER=1")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


@dataclass
class PageCheck:
    """What the browser saw: console errors, failed requests, sections and their sizes."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    sections: dict[str, tuple[str, float]] = field(default_factory=dict)
    svgs_drawn: int = 0


def open_report(html: Path, screenshot: Path) -> PageCheck:
    """Load the file with the network cut off, record problems, screenshot the whole page."""
    playwright = pytest.importorskip("playwright.sync_api")
    check = PageCheck()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on(
                "console",
                lambda m: check.errors.append(m.text) if m.type in ("error", "warning") else None,
            )
            page.on("pageerror", lambda e: check.errors.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith("file://") else check.requests.append(r.url),
            )
            page.goto(html.resolve().as_uri(), wait_until="load")
            for section in page.locator("main > section").all():
                sid = section.get_attribute("id") or ""
                heading = section.locator(":scope > h2").inner_text()
                box = section.bounding_box()
                check.sections[sid] = (heading, box["height"] if box else 0.0)
            check.svgs_drawn = page.evaluate(
                "[...document.querySelectorAll('svg')]"
                ".filter(s => s.getBoundingClientRect().width > 50).length"
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return check
