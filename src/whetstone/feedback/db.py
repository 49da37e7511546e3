"""Transactions on the result store's database for the feedback tables.

The feedback studio keeps its rows in the store's own database (one metadata, one migration
chain), so it uses the store's transaction helpers: SQLite writes take the write lock up front
(BEGIN IMMEDIATE) and wait on the busy timeout; PostgreSQL writes that must not interleave
(assignment, chat turns) take a transaction-scoped advisory lock per campaign.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, text

from whetstone.feedback import tables as t
from whetstone.store import Store

owners = cast(Table, t.FeedbackOwnerTable.__table__)
sessions = cast(Table, t.FeedbackSessionTable.__table__)
campaigns = cast(Table, t.FeedbackCampaignTable.__table__)
items = cast(Table, t.FeedbackItemTable.__table__)
answers = cast(Table, t.FeedbackAnswerTable.__table__)
participants = cast(Table, t.FeedbackParticipantTable.__table__)
units = cast(Table, t.FeedbackUnitTable.__table__)
conversations = cast(Table, t.FeedbackConversationTable.__table__)
assignments = cast(Table, t.FeedbackAssignmentTable.__table__)
ratings = cast(Table, t.FeedbackRatingTable.__table__)


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A datetime from the database made timezone-aware (SQLite returns naive UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@contextmanager
def read(store: Store) -> Iterator[Connection]:
    """A connection in a read transaction."""
    with store._read() as conn:
        yield conn


@contextmanager
def write(store: Store, lock: str | None = None) -> Iterator[Connection]:
    """A connection in a write transaction; ``lock`` serializes writers of one campaign."""
    with store._write() as conn:
        if lock is not None and store.dialect == "postgresql":
            key = int.from_bytes(hashlib.sha256(lock.encode()).digest()[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield conn


def analyze(store: Store, *tables: Table) -> None:
    """Refresh PostgreSQL's planner statistics after bulk inserts or updates.

    Without them a freshly filled campaign looks empty to the planner, which then picks
    nested loops whose cost grows with the square of the campaign's size.
    """
    if store.dialect != "postgresql":
        return
    with store._write() as conn:
        conn.execute(text(f"ANALYZE {', '.join(t.name for t in tables)}"))


def insert(store: Store, table: Table) -> Any:
    """The dialect's INSERT (with on_conflict_do_update / do_nothing)."""
    return store._insert(table)
