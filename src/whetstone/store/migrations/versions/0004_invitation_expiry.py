"""Invitations that expire and can be revoked: two columns of feedback_participants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add expires_at and revoked_at (links made before have no expiry)."""
    for name in ("expires_at", "revoked_at"):
        op.add_column(
            "feedback_participants", sa.Column(name, sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("feedback_participants") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
