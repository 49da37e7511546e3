"""The summary's HTML section: self-contained, escaped, and showing the summary's numbers."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar

from whetstone.feedback import (
    AnswerRating,
    Submission,
    campaign_summary,
    create_campaign,
    generate_answers,
    invite,
    next_task,
    render_html_section,
    submit,
)
from whetstone.store import Store

from .conftest import config

EVIL = '<img src=x onerror="alert(1)">'


class Collector(HTMLParser):
    """Tags, attributes and text of a fragment, and whether its tags are balanced."""

    VOID: ClassVar[set[str]] = {
        "meta",
        "br",
        "img",
        "input",
        "link",
        "rect",
        "line",
        "circle",
        "hr",
    }

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def arena_summary(store: Store):  # type: ignore[no-untyped-def]
    cfg = config("arena", n_models=3, questions=["comment", "tags"], overlap=2)
    models = [
        m.model_copy(update={"name": EVIL if k == 0 else m.name}) for k, m in enumerate(cfg.models)
    ]
    campaign = create_campaign(store, cfg.model_copy(update={"models": models}))
    generate_answers(store, campaign)
    for name in ("ann", "bob"):
        person = invite(store, campaign.id, name).participant
        while (task := next_task(store, campaign, person)) is not None:
            submission = Submission(
                assignment_id=task.assignment_id,
                choice="left" if task.assignment_id % 3 else "tie",
                comment=EVIL,
                answers=[AnswerRating(tags=["factual"]), AnswerRating()],
            )
            submit(store, campaign, person, submission)
    return campaign_summary(store, campaign.id, n_boot=50)


def test_section_is_self_contained_and_escaped(store: Store) -> None:
    summary = arena_summary(store)
    html = render_html_section(summary)
    parsed = Collector()
    parsed.feed(html)
    parsed.close()
    assert parsed.stack == []  # balanced
    assert "script" not in parsed.tags and "img" not in parsed.tags and "iframe" not in parsed.tags
    assert not [a for a in parsed.attrs if a[0].startswith("on")]
    assert not [v for k, v in parsed.attrs if k in ("src", "href") and v and not v.startswith("#")]
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/2000/svg)", html)
    assert parsed.tags.count("svg") == 3  # ranking, win-rate matrix, alpha
    text = " ".join(parsed.text)
    assert EVIL in text  # shown as text, not markup
    assert summary.ranking is not None
    for entry in summary.ranking.entries:
        assert f"{entry.rating:.0f}" in text
        assert f"[{entry.ci_low:.0f}, {entry.ci_high:.0f}]" in text
    assert f"{summary.counts.battles}" in text
    arena = next(a for a in summary.agreement if a.question == "arena")
    assert arena.fleiss_kappa is not None and f"{arena.fleiss_kappa:.2f}" in text


def test_too_few_items_show_as_too_few_not_as_an_interval(store: Store) -> None:
    """One item judged by two people: shares and means are flagged in the page and the JSON."""
    cfg = config("review", n_models=1, n_prompts=1, questions=["thumbs", "likert"], overlap=2)
    campaign = create_campaign(store, cfg)
    generate_answers(store, campaign)
    for name, likert in (("ann", 3), ("bob", 4)):
        person = invite(store, campaign.id, name).participant
        while (task := next_task(store, campaign, person)) is not None:
            rating = AnswerRating(thumbs=True, likert=likert)
            submit(
                store,
                campaign,
                person,
                Submission(assignment_id=task.assignment_id, answers=[rating]),
            )
    summary = campaign_summary(store, campaign.id, n_boot=50)
    ratings = summary.model_ratings[0]
    for metric in (ratings.thumbs_up, ratings.likert_mean, ratings.failure_rate):
        assert metric is not None and metric.too_few and metric.ci_low is None and metric.note
    dumped = summary.model_dump(mode="json")["model_ratings"][0]["likert_mean"]
    assert dumped["too_few"] is True and dumped["ci_low"] is None
    text = re.sub(r"<[^>]+>", " ", render_html_section(summary))
    table = text.split("Ratings per model")[1].split("Intervals:")[0]
    assert table.count("too few") == 3 and "[" not in table
