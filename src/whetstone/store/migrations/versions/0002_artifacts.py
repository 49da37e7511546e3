"""Artifacts: JSON results of diagnosis, audit, optimization and pipeline stages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    """JSON on SQLite, JSONB on PostgreSQL (as in whetstone.store.tables)."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create the artifacts table."""
    op.create_table(
        "artifacts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refs", _json(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_artifacts_kind_key")),
    )
    op.create_index(
        "ix_artifacts_kind_created_at", "artifacts", ["kind", "created_at"], unique=False
    )


def downgrade() -> None:
    """Drop the artifacts table."""
    op.drop_index("ix_artifacts_kind_created_at", table_name="artifacts")
    op.drop_table("artifacts")
