"""Answers and chat replies from real transformers models: the tiny test Llama (fast) and the
embedded Gemma 3 270M (slow). The studio must send what the model would answer when asked
directly through the same protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from whetstone.feedback import chat, create_campaign, db, generate_answers, invite
from whetstone.feedback.config import parse_config
from whetstone.feedback.generation import ModelPool
from whetstone.models import GenerationRequest
from whetstone.store import Store

from .conftest import stream_reply

PROMPTS = ["The quick brown fox", "Sync your notes across"]


def review(
    store: Store,
    spec: str,
    max_new_tokens: int,
    chat_template: bool = False,
    pool: ModelPool | None = None,
):  # type: ignore[no-untyped-def]
    cfg = parse_config(
        {
            "name": f"review-{Path(spec).name}",
            "mode": "review",
            "models": [{"spec": spec, "name": "model"}],
            "questions": ["likert"],
            "prompts": {"items": [{"prompt": p} for p in PROMPTS]},
            "generation": {"max_new_tokens": max_new_tokens, "chat_template": chat_template},
        }
    )
    campaign = create_campaign(store, cfg)
    assert generate_answers(store, campaign, pool) == len(PROMPTS)
    with db.read(store) as conn:
        rows = conn.execute(
            select(db.answers.c.item_id, db.answers.c.output, db.answers.c.model_version).where(
                db.answers.c.campaign_id == campaign.id
            )
        ).all()
    return campaign, {r.item_id: (r.output, r.model_version) for r in rows}


def test_review_answers_from_a_transformers_model(store: Store, tiny_lm_dir: Path) -> None:
    pool = ModelPool()
    campaign, answers = review(store, str(tiny_lm_dir), max_new_tokens=6, pool=pool)
    model = pool.get(campaign.config.models[0]).model  # loaded once, asked directly
    for i, prompt in enumerate(PROMPTS):
        output, version = answers[str(i)]
        expected = model.generate([GenerationRequest(prompt=prompt, max_new_tokens=6)])[0]
        assert output == expected and output
        assert version == model.identity.key


def test_chat_reply_from_a_transformers_model(store: Store, tiny_lm_dir: Path) -> None:
    cfg = parse_config(
        {
            "name": "chat-tiny",
            "mode": "chat",
            "models": [{"spec": str(tiny_lm_dir)}],
            "generation": {"max_new_tokens": 6},
        }
    )
    campaign = create_campaign(store, cfg)
    ann = invite(store, campaign.id, "ann").participant
    conversation = chat.start_conversation(store, campaign, ann)
    pending = chat.begin_turn(store, campaign, ann, conversation, "The quick brown fox")
    loaded = ModelPool().get(campaign.config.models[0])
    reply = "".join(stream_reply(loaded, cfg.generation, pending.messages))
    model = loaded.model
    prompt = model.chat_prompt(pending.messages)
    stop = () if model.has_chat_template else ("\nuser:",)
    assert (
        reply == model.generate([GenerationRequest(prompt=prompt, max_new_tokens=6, stop=stop)])[0]
    )


@pytest.mark.slow
def test_embedded_gemma_answers_and_streams(store: Store, default_model_dir: Path) -> None:
    pool = ModelPool()
    campaign, answers = review(store, "default", max_new_tokens=8, chat_template=True, pool=pool)
    loaded = pool.get(campaign.config.models[0])  # the same weights, loaded once
    model = loaded.model
    stop = () if model.has_chat_template else ("\nuser:",)
    for i, prompt in enumerate(PROMPTS):
        output, version = answers[str(i)]
        chat_prompt = model.chat_prompt([{"role": "user", "content": prompt}])
        request = GenerationRequest(prompt=chat_prompt, max_new_tokens=8, stop=stop)
        assert output == model.generate([request])[0]
        assert output.strip() and version == model.identity.key
    messages = [{"role": "user", "content": "Name a colour."}]
    pieces = list(stream_reply(loaded, campaign.config.generation, messages))
    request = GenerationRequest(prompt=model.chat_prompt(messages), max_new_tokens=8, stop=stop)
    assert "".join(pieces) == model.generate([request])[0]
    assert len(pieces) >= 2  # streamed in several pieces


def test_a_model_behind_an_openai_compatible_server(store: Store) -> None:
    """`whetstone serve` (here over the fake model) as the campaign's model, by URL."""
    from whetstone.models.fake import FakeModel
    from whetstone.serve import create_app as serve_app

    from ..serve.test_openai_http import running

    local = FakeModel(seed=2)
    with running(serve_app(local, "served")) as base:
        cfg = parse_config(
            {
                "name": "served",
                "mode": "review",
                "models": [{"spec": "openai:served", "base_url": f"{base}/v1", "name": "remote"}],
                "questions": ["likert"],
                "prompts": {"items": [{"prompt": p} for p in PROMPTS]},
                "generation": {"max_new_tokens": 10},
            }
        )
        pool = ModelPool()
        campaign = create_campaign(store, cfg)
        assert generate_answers(store, campaign, pool) == len(PROMPTS)
        with db.read(store) as conn:
            outputs = dict(
                conn.execute(
                    select(db.answers.c.item_id, db.answers.c.output).where(
                        db.answers.c.campaign_id == campaign.id
                    )
                ).all()
            )
        for i, prompt in enumerate(PROMPTS):
            request = GenerationRequest(prompt=prompt, max_new_tokens=10)
            assert outputs[str(i)] == local.generate([request])[0]
        # chat streams through the server's SSE and equals the whole (non-streamed) reply
        loaded = pool.get(cfg.models[0])
        messages = [{"role": "user", "content": "Hello there"}]
        streamed = "".join(stream_reply(loaded, cfg.generation, messages))
        whole = loaded.model.chat(messages, GenerationRequest(prompt="", max_new_tokens=10))  # type: ignore[attr-defined]
        assert streamed == whole and streamed
        pool.close()
