"""The studio end to end in Debian's Chromium (Playwright, never `playwright install`).

An owner signs in and creates arena, review and chat campaigns through the forms; two
participants judge through their personal links (an arena battle each way, review ratings and
a streamed chat turn); prompts carrying a <script> and an onerror= payload must not run; the
owner's dashboard shows the numbers campaign_summary computes. No console errors; screenshots
are saved under the test's tmp folder.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from whetstone.feedback import auth, campaign_summary, judgments, list_campaigns
from whetstone.store import Store

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("WHETSTONE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "studio password 1"
XSS_PROMPTS = [
    "<script>window.__xss = 'script'</script>How do I sync?",
    "<img src=x onerror=\"window.__xss = 'onerror'\">Where is the trash?",
    "Can I export as PDF?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Store]]:
    """The studio on a loopback port, served by uvicorn in a thread."""
    if os.environ.get("WHETSTONE_TEST_BROWSER") != "1":
        pytest.skip("browser tests need WHETSTONE_TEST_BROWSER=1")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    import uvicorn

    from whetstone.feedback.app import AppSettings, create_app

    store = Store(f"sqlite:///{tmp_path / 'studio.db'}")
    auth.set_owner(store, "olga", PASSWORD)
    port = _free_port()
    app = create_app(store, AppSettings(n_boot=200))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", store
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()


class Watch:
    """Console errors and uncaught exceptions of every page of a browser context."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page: Any) -> Any:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page


def _create(
    page: Any,
    base: str,
    name: str,
    mode: str,
    models: str,
    questions: list[str],
    prompts: list[str] | None,
) -> str:
    """Fill in the new-campaign form; returns the campaign id once its answers are ready."""
    page.goto(f"{base}/owner/new")
    page.fill("input[name=name]", name)
    page.check(f"input[name=mode][value={mode}]")
    page.fill("textarea[name=models]", models)
    for q in ("thumbs", "likert", "comment", "correction", "tags"):
        box = page.locator(f"input[name=questions][value={q}]")
        box.check() if q in questions else box.uncheck()
    if prompts is None:
        page.check("input[name=source][value=none]")
    else:
        page.check("input[name=source][value=lines]")
        page.fill("textarea[name=prompts_text]", "\n".join(prompts))
    page.fill("input[name=overlap]", "2")
    page.fill("input[name=max_new_tokens]", "16")
    page.click("#new-campaign button[type=submit]")
    page.wait_for_url("**/owner/campaigns/*")
    # the dashboard polls the generation progress and reloads when every answer is there
    page.wait_for_selector('#progress[data-pending="0"]', timeout=60_000)
    return str(page.url.rsplit("/", 1)[1])


def _invite(page: Any, base: str, campaign_id: str, names: list[str]) -> list[str]:
    page.goto(f"{base}/owner/campaigns/{campaign_id}")
    page.fill("#invite-form textarea[name=names]", "\n".join(names))
    page.click("#invite-form button[type=submit]")
    links = [page.locator("input.invite-link").nth(k).input_value() for k in range(len(names))]
    assert all(link.startswith(f"{base}/p/") for link in links)
    return links


def _no_xss(page: Any) -> None:
    assert page.evaluate("() => window.__xss === undefined")


def test_owner_and_two_participants_in_chromium(server: tuple[str, Store], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, store = server
    watch = Watch()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            owner = watch.attach(browser.new_context().new_page())
            owner.goto(f"{base}/login")
            owner.fill("input[name=name]", "olga")
            owner.fill("input[name=password]", PASSWORD)
            owner.click("button[type=submit]")
            owner.wait_for_url(f"{base}/owner")

            arena = _create(
                owner,
                base,
                "arena",
                "arena",
                "zero=fake:0\none=fake:1\ntwo=fake:2",
                ["comment", "tags"],
                XSS_PROMPTS,
            )
            review = _create(
                owner,
                base,
                "review",
                "review",
                "zero=fake:0\none=fake:1",
                ["thumbs", "likert", "comment"],
                XSS_PROMPTS[:2],
            )
            talk = _create(owner, base, "chat", "chat", "zero=fake:0", ["thumbs", "likert"], None)
            arena_links = _invite(owner, base, arena, ["ann", "bob"])
            review_links = _invite(owner, base, review, ["ann", "bob"])
            (chat_link,) = _invite(owner, base, talk, ["ann"])

            for k, link in enumerate(arena_links):
                page = watch.attach(browser.new_context().new_page())
                page.goto(link)
                battles = 0
                while page.locator("#rate-form").count():
                    _no_xss(page)
                    assert "zero" not in page.inner_text("main")  # blind: no model names
                    choice = ["left", "right", "tie", "both_bad"][(battles + k) % 4]
                    page.check(f"input[name=choice][value={choice}]")
                    if battles == 0:
                        page.check("#answer-left input[name=left_tags][value=factual]")
                        page.fill("textarea[name=comment]", "<b>bold?</b> no")
                    page.click("#submit")
                    page.wait_for_load_state()
                    battles += 1
                assert page.locator("#done").count() == 1 and battles == 3
                _no_xss(page)

            for k, link in enumerate(review_links):
                page = watch.attach(browser.new_context().new_page())
                page.goto(link)
                while page.locator("#rate-form").count():
                    _no_xss(page)
                    page.check(f"input[name=thumbs][value={'up' if k else 'down'}]")
                    page.check(f"input[name=likert][value='{4 if k else 2}']")
                    page.click("#submit")
                    page.wait_for_load_state()
                assert page.locator("#done").count() == 1

            page = watch.attach(browser.new_context().new_page())
            page.goto(chat_link)
            page.fill("#message", "Hello, can you help me with <i>sync</i>?")
            page.click("#send")
            # the reply streams into the page, which then reloads with the rating form
            page.wait_for_selector("#rate-turn", timeout=30_000)
            reply = page.locator(".msg.assistant").first.inner_text()
            assert reply.strip()
            assert (
                page.locator(".msg.user").first.inner_text()
                == "Hello, can you help me with <i>sync</i>?"
            )
            page.check("#rate-turn input[name=thumbs][value=up]")
            page.check("#rate-turn input[name=likert][value='5']")
            page.click("#rate-turn button[type=submit]")
            page.wait_for_selector("#chat-form:not([hidden])")
            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

            owner.goto(f"{base}/owner/campaigns/{arena}")
            _no_xss(owner)
            summary = campaign_summary(store, arena, n_boot=200)
            assert summary.ranking is not None
            assert owner.inner_text(".ws-count-battles") == str(summary.counts.battles) == "6"
            rows = owner.locator("table.ws-ranking tr")
            assert rows.count() == 1 + len(summary.ranking.entries)
            for k, entry in enumerate(summary.ranking.entries, start=1):
                cells = rows.nth(k).locator("td").all_inner_texts()
                assert cells[1] == entry.model and cells[2] == f"{entry.rating:.0f}"
            agreement = owner.inner_text("table.ws-agreement")
            arena_agreement = next(a for a in summary.agreement if a.question == "arena")
            assert (
                arena_agreement.fleiss_kappa is not None
                and f"{arena_agreement.fleiss_kappa:.2f}" in agreement
            )
            assert "left answer won" in owner.inner_text(".ws-position-bias")
            assert owner.locator("section.ws-feedback svg").count() >= 3
            owner.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            owner.goto(f"{base}/owner/campaigns/{review}")
            review_summary = campaign_summary(store, review, n_boot=200)
            likert = next(a for a in review_summary.agreement if a.question == "likert")
            assert owner.inner_text(".ws-count-judgments") == "8" and likert.units == 4
            _no_xss(owner)
        finally:
            browser.close()
    assert watch.errors == []
    assert len(judgments(store, talk)) == 1
    assert {c.name for c in list_campaigns(store)} == {"arena", "review", "chat"}
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
