"""Fixtures of the feedback studio's tests: a fresh store and campaign configurations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from whetstone.feedback import auth
from whetstone.feedback.app import AppSettings, create_app
from whetstone.feedback.config import CampaignConfig, GenerationSettings, parse_config
from whetstone.feedback.generation import LoadedModel, Reply
from whetstone.store import Store

PROMPTS = [
    "How do I share a notebook with my team?",
    "Why did my notes stop syncing?",
    "Can I export a page as PDF?",
    "How do I change my password?",
    "Where is the trash folder?",
    "Does the app work offline?",
    "How do I add a tag to a note?",
    "Can two people edit the same note at once?",
]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A SQLite database that does not exist yet."""
    return f"sqlite:///{tmp_path / 'feedback.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on a fresh database."""
    with Store(store_url) as opened:
        yield opened


def config(
    mode: str = "review", n_models: int = 2, n_prompts: int = 6, **extra: Any
) -> CampaignConfig:
    """A campaign over fake models (fake:0, fake:1, ...) and the example prompts."""
    raw: dict[str, Any] = {
        "name": f"{mode}-campaign",
        "mode": mode,
        "models": [{"spec": f"fake:{k}", "name": f"m{k}"} for k in range(n_models)],
        "generation": {"max_new_tokens": 12},
    }
    if mode != "chat":
        raw["prompts"] = {
            "items": [{"id": f"q{i}", "prompt": p} for i, p in enumerate(PROMPTS[:n_prompts])]
        }
    raw.update(extra)
    return parse_config(raw)


def stream_reply(
    loaded: LoadedModel, settings: GenerationSettings, messages: list[dict[str, str]]
) -> list[str]:
    """The pieces of a chat reply, read as the studio reads them (on an event loop)."""

    async def collect() -> list[str]:
        return [piece async for piece in Reply(loaded, settings, messages).pieces()]

    return asyncio.run(collect())


PASSWORD = "correct horse battery"
"""The owners' password in the web app tests."""


@pytest.fixture
def app_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    # cheaper scrypt for speed: the cost is stored with each hash and read back on checking
    monkeypatch.setattr(auth, "SCRYPT_N", 2**10)
    auth.set_owner(store, "olga", PASSWORD)
    auth.set_owner(store, "other", PASSWORD)
    return store


def make_client(store: Store, **settings: Any) -> TestClient:
    return TestClient(create_app(store, AppSettings(n_boot=50, **settings)))


@pytest.fixture
def client(app_store: Store) -> Iterator[TestClient]:
    with make_client(app_store) as c:
        yield c
