"""The store-backed campaign flow on a real PostgreSQL server, each test in its own schema.

Set WHETSTONE_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from .test_campaign_flow import (
    test_arena_sides_ranking_and_position_bias,
    test_campaigns_are_isolated,
    test_chat_turns_are_streamed_stored_and_rated,
    test_concurrent_participants_never_exceed_the_overlap,
    test_generation_resumes_and_reuses_the_cache,
    test_review_campaign_end_to_end,
    test_skip_cap_and_validation,
)

pytestmark = pytest.mark.postgres

URL_ENV = "WHETSTONE_TEST_POSTGRES_URL"

__all__ = [
    "test_arena_sides_ranking_and_position_bias",
    "test_campaigns_are_isolated",
    "test_chat_turns_are_streamed_stored_and_rated",
    "test_concurrent_participants_never_exceed_the_overlap",
    "test_generation_resumes_and_reuses_the_cache",
    "test_review_campaign_end_to_end",
    "test_skip_cap_and_validation",
]


@pytest.fixture
def store_url() -> Iterator[str]:
    """A fresh, empty schema on the test server (dropped afterwards)."""
    base = os.environ.get(URL_ENV)
    if not base:
        pytest.skip(f"set {URL_ENV} to run the PostgreSQL feedback tests")
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    schema = f"ws_fb_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
                hide_password=False
            )
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        admin.dispose()
