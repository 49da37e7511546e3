"""The store's round trips on a real PostgreSQL server, each test in a schema of its own.

Set WHETSTONE_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run
them; every test creates a schema ws_test_<random>, points the store at it through the URL's
``options=-csearch_path=...`` and drops it (with everything in it) afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from whetstone.store import Store

from .test_store import (
    EXPECTED_COLUMNS,
    test_artifacts_round_trip_replace_and_list,
    test_cache_round_trip,
    test_fail_and_delete_run,
    test_find_unfinished_run,
    test_list_runs_newest_first,
    test_opening_concurrently_migrates_once,
    test_prefix_lookup,
    test_reopening_is_a_no_op,
    test_run_round_trip,
    test_sample_upsert_replaces,
    test_samples_need_a_run,
    test_samples_round_trip_and_order,
    test_schema_is_exactly_the_migrated_tables,
)

pytestmark = pytest.mark.postgres

URL_ENV = "WHETSTONE_TEST_POSTGRES_URL"

__all__ = [
    "test_artifacts_round_trip_replace_and_list",
    "test_cache_round_trip",
    "test_fail_and_delete_run",
    "test_find_unfinished_run",
    "test_list_runs_newest_first",
    "test_opening_concurrently_migrates_once",
    "test_prefix_lookup",
    "test_reopening_is_a_no_op",
    "test_run_round_trip",
    "test_sample_upsert_replaces",
    "test_samples_need_a_run",
    "test_samples_round_trip_and_order",
    "test_schema_is_exactly_the_migrated_tables",
]


@pytest.fixture
def store_url() -> Iterator[str]:
    """The URL of a fresh, empty schema on the test server; dropped after the test."""
    base = os.environ.get(URL_ENV)
    if not base:
        pytest.skip(f"set {URL_ENV} to run the PostgreSQL store tests")
    url = make_url(base)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    schema = f"ws_test_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on a fresh schema."""
    with Store(store_url) as opened:
        yield opened


def test_store_lives_in_its_own_schema(store: Store, store_url: str) -> None:
    options = make_url(store_url).query["options"]
    assert isinstance(options, str)
    schema = options.split("=", 1)[1]
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_schema()")).scalar_one() == schema
            tables = conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            ).scalars()
            assert set(tables) == set(EXPECTED_COLUMNS)
            kinds: dict[str, str] = dict(
                conn.execute(
                    text(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = :s AND table_name = 'runs'"
                    ),
                    {"s": schema},
                ).all()
            )
            assert kinds["config"] == "jsonb"
            assert kinds["created_at"] == "timestamp with time zone"
    finally:
        engine.dispose()


def test_evaluate_end_to_end_on_postgres(store_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A whole evaluation stores its run, samples and cache on the server; a rerun is cached."""
    from whetstone.data import examples_dir
    from whetstone.evaluate.engine import evaluate
    from whetstone.evaluate.outputs import read_samples

    suite = examples_dir() / "suite.yaml"
    first = evaluate("fake", [suite], limit=6, db=store_url, out_dir=tmp_path)
    again = evaluate("fake", [suite], limit=6, db=store_url)
    assert first.computed > 0 and again.computed == 0 and again.reused == first.computed
    store = Store(store_url)
    try:
        runs = {r.run_id: r for r in store.list_runs()}
        assert set(runs) == {first.result.run_id, again.result.run_id}
        assert all(r.status == "finished" for r in runs.values())
        stored = store.get_samples(first.result.run_id)
        assert [s.model_dump() for s in stored] == [s.model_dump() for s in read_samples(tmp_path)]
        assert again.result.tasks == first.result.tasks
    finally:
        store.close()
