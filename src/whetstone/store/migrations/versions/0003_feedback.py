"""Feedback studio: owners, sessions, campaigns, items, answers, participants, units,
conversations, assignments and ratings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "feedback_owners",
    "feedback_sessions",
    "feedback_campaigns",
    "feedback_items",
    "feedback_answers",
    "feedback_participants",
    "feedback_units",
    "feedback_conversations",
    "feedback_assignments",
    "feedback_ratings",
)


def _json(nullable: bool) -> sa.types.TypeEngine:
    """JSON on SQLite, JSONB on PostgreSQL (as in whetstone.store.tables)."""
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSONB(none_as_null=nullable), "postgresql"
    )


def _row_id() -> sa.types.TypeEngine:
    """BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    """The autoincrementing primary key column ``id``."""
    return sa.Column("id", _row_id(), autoincrement=True, nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column:
    """A timezone-aware timestamp column."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _ref(
    table: str, column: str, target: str, ondelete: str = "CASCADE"
) -> sa.ForeignKeyConstraint:
    """A foreign key named by the store's convention."""
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete,
    )


def _campaign(table: str) -> list[SchemaItem]:
    """The ``campaign_id`` column and its foreign key."""
    return [
        sa.Column("campaign_id", sa.String(length=32), nullable=False),
        _ref(table, "campaign_id", "feedback_campaigns"),
    ]


def _pk(table: str, column: str = "id") -> sa.PrimaryKeyConstraint:
    """The primary key named by the store's convention."""
    return sa.PrimaryKeyConstraint(column, name=op.f(f"pk_{table}"))


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    """A unique constraint named by the store's convention."""
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _check(table: str, name: str, sql: str) -> sa.CheckConstraint:
    """A check constraint named by the store's convention."""
    return sa.CheckConstraint(sql, name=op.f(f"ck_{table}_{name}"))


def upgrade() -> None:
    """Create the feedback studio's tables."""
    t = "feedback_owners"
    op.create_table(
        t,
        _id(),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _time("created_at"),
        _pk(t),
        _unique(t, "name"),
    )
    t = "feedback_sessions"
    op.create_table(
        t,
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("owner_id", _row_id(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        _time("created_at"),
        _time("expires_at"),
        _ref(t, "owner_id", "feedback_owners"),
        _pk(t, "token_hash"),
    )
    t = "feedback_campaigns"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("config", _json(False), nullable=False),
        sa.Column("owner_id", _row_id(), nullable=True),
        _time("created_at"),
        _check(t, "mode", "mode IN ('review', 'chat', 'arena')"),
        _check(t, "status", "status IN ('open', 'closed')"),
        _ref(t, "owner_id", "feedback_owners", ondelete="SET NULL"),
        _pk(t),
        _unique(t, "name"),
    )
    t = "feedback_items"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("data", _json(True), nullable=True),
        _time("created_at"),
        _pk(t),
        _unique(t, "campaign_id", "item_id"),
    )
    t = "feedback_answers"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at"),
        _time("finished_at", nullable=True),
        _check(t, "status", "status IN ('pending', 'done', 'failed')"),
        _pk(t),
        _unique(t, "campaign_id", "item_id", "model"),
    )
    op.create_index("ix_feedback_answers_campaign_status", t, ["campaign_id", "status"])
    t = "feedback_participants"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        _time("created_at"),
        _time("last_seen_at", nullable=True),
        _pk(t),
        _unique(t, "campaign_id", "name"),
        _unique(t, "token_hash"),
    )
    t = "feedback_units"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("model_a", sa.String(length=200), nullable=False),
        sa.Column("model_b", sa.String(length=200), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("participant_id", _row_id(), nullable=True),
        _ref(t, "participant_id", "feedback_participants"),
        _pk(t),
        _unique(t, "campaign_id", "key"),
    )
    t = "feedback_conversations"
    op.create_table(
        t,
        sa.Column("id", sa.String(length=32), nullable=False),
        *_campaign(t),
        sa.Column("participant_id", _row_id(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        _time("created_at"),
        _ref(t, "participant_id", "feedback_participants"),
        _pk(t),
    )
    t = "feedback_assignments"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("participant_id", _row_id(), nullable=False),
        sa.Column("unit_id", _row_id(), nullable=False),
        sa.Column("left_model", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _time("created_at"),
        _time("done_at", nullable=True),
        _check(t, "status", "status IN ('open', 'done', 'skipped')"),
        _ref(t, "participant_id", "feedback_participants"),
        _ref(t, "unit_id", "feedback_units"),
        _pk(t),
        _unique(t, "participant_id", "unit_id"),
    )
    op.create_index(
        "ix_feedback_assignments_campaign_unit", t, ["campaign_id", "unit_id", "status"]
    )
    t = "feedback_ratings"
    op.create_table(
        t,
        _id(),
        *_campaign(t),
        sa.Column("assignment_id", _row_id(), nullable=False),
        sa.Column("participant_id", _row_id(), nullable=False),
        sa.Column("answer_id", _row_id(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("model_version", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("opponent", sa.String(length=200), nullable=True),
        sa.Column("thumbs", sa.Boolean(), nullable=True),
        sa.Column("likert", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("correction", sa.Text(), nullable=True),
        sa.Column("tags", _json(False), nullable=False),
        sa.Column("arena_outcome", sa.String(length=16), nullable=True),
        _time("created_at"),
        _check(
            t,
            "arena_outcome",
            "arena_outcome IS NULL OR arena_outcome IN ('win', 'loss', 'tie', 'both_bad')",
        ),
        _check(t, "likert", "likert IS NULL OR (likert >= 1 AND likert <= 5)"),
        _ref(t, "assignment_id", "feedback_assignments"),
        _ref(t, "participant_id", "feedback_participants"),
        _ref(t, "answer_id", "feedback_answers"),
        _pk(t),
        _unique(t, "assignment_id", "answer_id"),
    )
    op.create_index("ix_feedback_ratings_campaign_id", t, ["campaign_id", "id"])


def downgrade() -> None:
    """Drop the feedback studio's tables (indexes go with them)."""
    for table in reversed(TABLES):
        op.drop_table(table)
