"""Streamed chat replies on a real server (uvicorn on loopback, the background worker on).

The attacks these reproduce: a reply cut off by its client used to keep the model locked (the
lock was held across the stream's yields until the garbage collector ran), so every later chat
on that model hung, the answer worker stalled and hung requests used up the thread pool until
no page answered; concurrent sends on one conversation each streamed a reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from whetstone.feedback import chat, create_campaign, invite
from whetstone.feedback.app import AppSettings, create_app
from whetstone.feedback.campaigns import Campaign
from whetstone.feedback.config import parse_config
from whetstone.feedback.generation import MAX_WAITING, answer_progress
from whetstone.feedback.participants import Invitation
from whetstone.store import Store

from .conftest import PROMPTS


@contextmanager
def serving(store: Store) -> Iterator[str]:
    """The studio on a free loopback port, with its lifespan (and answer worker) running."""
    from tests.serve.test_openai_http import running

    with running(create_app(store, AppSettings(n_boot=50)), lifespan="on") as base:
        yield base


def chat_campaign(store: Store, spec: str, name: str = "chat") -> Campaign:
    cfg = parse_config(
        {
            "name": name,
            "mode": "chat",
            "models": [{"spec": spec, "name": "m"}],
            "generation": {"max_new_tokens": 24},
        }
    )
    return create_campaign(store, cfg)


def send(base: str, who: Invitation, conversation: str, message: str = "Hi") -> list[str]:
    """One chat message; the names of the events of the reply."""
    with httpx.stream(
        "POST",
        f"{base}/p/{who.token}/chat/send",
        json={"conversation": conversation, "message": message},
        headers={"x-csrf-token": who.participant.csrf},
        timeout=60,
    ) as response:
        if response.status_code != 200:
            return [f"http {response.status_code}: {response.read().decode()[:200]}"]
        body = "".join(response.iter_text())
    return [block.split("\n")[0].removeprefix("event: ") for block in body.strip().split("\n\n")]


def test_a_reply_cut_off_by_its_client_frees_the_model(store: Store) -> None:
    campaign = chat_campaign(store, "fake:3:1.5")  # 1.5 s before each reply's first piece
    ann, bob = invite(store, campaign.id, "ann"), invite(store, campaign.id, "bob")
    first = chat.start_conversation(store, campaign, ann.participant)
    other = chat.start_conversation(store, campaign, bob.participant)
    with serving(store) as base:
        with httpx.stream(
            "POST",
            f"{base}/p/{ann.token}/chat/send",
            json={"conversation": first, "message": "Hello"},
            headers={"x-csrf-token": ann.participant.csrf},
            timeout=30,
        ) as response:
            assert response.status_code == 200  # the reply has started; the client leaves
        started = time.monotonic()
        assert send(base, bob, other)[-1] == "done"  # the same model answers someone else
        assert time.monotonic() - started < 10
        # the cut-off turn was not stored: its conversation takes a message again
        assert send(base, ann, first)[-1] == "done"
        # and the answer worker still answers a new campaign
        review = create_campaign(
            store,
            parse_config(
                {
                    "name": "review",
                    "mode": "review",
                    "models": [{"spec": "fake:0", "name": "m0"}],
                    "prompts": {"items": [{"prompt": p} for p in PROMPTS[:3]]},
                    "generation": {"max_new_tokens": 8},
                }
            ),
        )
        deadline = time.monotonic() + 30
        while any(p.pending or not p.done for p in answer_progress(store, review)):
            assert time.monotonic() < deadline, "the worker did not answer a new campaign"
            time.sleep(0.2)
        assert httpx.get(f"{base}/login", timeout=5).status_code == 200


def test_many_simultaneous_sends_answer_and_the_pages_stay_up(store: Store) -> None:
    campaign = chat_campaign(store, "fake:8:0.05")
    n = MAX_WAITING + 24
    people = [invite(store, campaign.id, f"p{i}") for i in range(n)]
    conversations = [chat.start_conversation(store, campaign, p.participant) for p in people]
    with serving(store) as base, ThreadPoolExecutor(n) as pool:
        futures = [
            pool.submit(send, base, p, c) for p, c in zip(people, conversations, strict=True)
        ]
        time.sleep(0.3)
        started = time.monotonic()
        assert httpx.get(f"{base}/login", timeout=10).status_code == 200
        assert time.monotonic() - started < 3  # the pages answer during the flood
        outcomes = [f.result(timeout=90)[-1] for f in futures]
        assert set(outcomes) <= {"done", "error"}, outcomes
        assert outcomes.count("done") >= MAX_WAITING  # the queue's worth at least is answered
        # a sender refused as busy is told so, and is answered once the model is free
        for p, c, outcome in zip(people, conversations, outcomes, strict=True):
            if outcome == "error":
                assert send(base, p, c)[-1] == "done"


def test_one_conversation_streams_one_reply_at_a_time(store: Store) -> None:
    from sqlalchemy import func, select

    from whetstone.feedback import db

    campaign = chat_campaign(store, "fake:5:1.0")
    ann = invite(store, campaign.id, "ann")
    conversation = chat.start_conversation(store, campaign, ann.participant)
    with serving(store) as base, ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(send, base, ann, conversation, f"message {i}") for i in range(5)]
        outcomes = [f.result(60) for f in futures]
    assert sum(o[-1] == "done" for o in outcomes) == 1, outcomes
    refused = [o for o in outcomes if o[-1] != "done"]
    assert all(o[0].startswith("http 409") for o in refused), refused
    with db.read(store) as conn:
        stored = conn.execute(
            select(func.count())
            .select_from(db.items)
            .where(db.items.c.item_id.like(f"chat-{conversation}-%"))
        ).scalar_one()
    assert stored == 1


def test_a_closed_campaign_starts_no_conversation(store: Store) -> None:
    from whetstone.errors import WhetstoneError
    from whetstone.feedback.campaigns import get_campaign, set_status

    campaign = chat_campaign(store, "fake:0")
    ann = invite(store, campaign.id, "ann")
    set_status(store, campaign.id, "closed")
    with pytest.raises(WhetstoneError, match="closed"):
        chat.start_conversation(store, get_campaign(store, campaign.id), ann.participant)
