"""SQLAlchemy tables of the feedback studio, on the result store's metadata.

Migration 0003 creates exactly these tables; the store's schema test compares the two.

A campaign holds items (prompts), answers (one per item and model, generated in the
background), units (what one participant judges at once: one answer in review and chat, a pair
of answers in arena), participants (each with a personal link, stored only as a hash),
assignments (a unit given to a participant, with the left model of an arena battle) and
ratings (one row per judged answer). Owners sign in with a hashed password; their sessions are
stored as hashes of the cookie token.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from whetstone.store.tables import Base, DocumentJSON, NullableJSON, RowId

MODES = ("review", "chat", "arena")
CAMPAIGN_STATUSES = ("open", "closed")
ANSWER_STATUSES = ("pending", "done", "failed")
ASSIGNMENT_STATUSES = ("open", "done", "skipped")
OUTCOMES = ("win", "loss", "tie", "both_bad")


def _in(column: str, values: tuple[str, ...]) -> str:
    """A CHECK expression: column is one of values."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class FeedbackOwnerTable(Base):
    """Someone who may create campaigns and see their results (scrypt password hash)."""

    __tablename__ = "feedback_owners"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackSessionTable(Base):
    """A signed-in owner's session: the sha256 of the cookie token and its CSRF token."""

    __tablename__ = "feedback_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_owners.id", ondelete="CASCADE")
    )
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackCampaignTable(Base):
    """One campaign: its validated configuration, mode and status."""

    __tablename__ = "feedback_campaigns"
    __table_args__ = (
        CheckConstraint(_in("mode", MODES), name="mode"),
        CheckConstraint(_in("status", CAMPAIGN_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
    owner_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("feedback_owners.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackItemTable(Base):
    """A prompt of a campaign (a chat turn is an item too, with its conversation in data)."""

    __tablename__ = "feedback_items"
    __table_args__ = (UniqueConstraint("campaign_id", "item_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackAnswerTable(Base):
    """One model's answer to one item; pending until the generator fills it in."""

    __tablename__ = "feedback_answers"
    __table_args__ = (
        UniqueConstraint("campaign_id", "item_id", "model"),
        CheckConstraint(_in("status", ANSWER_STATUSES), name="status"),
        Index("ix_feedback_answers_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(Text)
    output: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeedbackParticipantTable(Base):
    """A participant: a name, the sha256 of their invitation token and their form token."""

    __tablename__ = "feedback_participants"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeedbackUnitTable(Base):
    """What one participant judges at once: an item with one model (two in arena).

    Chat units belong to the participant who held the conversation (``participant_id``).
    """

    __tablename__ = "feedback_units"
    __table_args__ = (UniqueConstraint("campaign_id", "key"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str] = mapped_column(Text)
    model_a: Mapped[str] = mapped_column(String(200))
    model_b: Mapped[str | None] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(Integer)
    participant_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("feedback_participants.id", ondelete="CASCADE")
    )


class FeedbackConversationTable(Base):
    """A chat conversation of one participant with one (hidden) model."""

    __tablename__ = "feedback_conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    participant_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_participants.id", ondelete="CASCADE")
    )
    model: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class FeedbackAssignmentTable(Base):
    """A unit given to a participant; in arena, which model was shown on the left."""

    __tablename__ = "feedback_assignments"
    __table_args__ = (
        UniqueConstraint("participant_id", "unit_id"),
        CheckConstraint(_in("status", ASSIGNMENT_STATUSES), name="status"),
        Index("ix_feedback_assignments_campaign_unit", "campaign_id", "unit_id", "status"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    participant_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_participants.id", ondelete="CASCADE")
    )
    unit_id: Mapped[int] = mapped_column(RowId, ForeignKey("feedback_units.id", ondelete="CASCADE"))
    left_model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeedbackRatingTable(Base):
    """One participant's judgment of one answer (an arena battle gives two rows)."""

    __tablename__ = "feedback_ratings"
    __table_args__ = (
        UniqueConstraint("assignment_id", "answer_id"),
        CheckConstraint(
            "arena_outcome IS NULL OR " + _in("arena_outcome", OUTCOMES), name="arena_outcome"
        ),
        CheckConstraint("likert IS NULL OR (likert >= 1 AND likert <= 5)", name="likert"),
        Index("ix_feedback_ratings_campaign_id", "campaign_id", "id"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("feedback_campaigns.id", ondelete="CASCADE")
    )
    assignment_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_assignments.id", ondelete="CASCADE")
    )
    participant_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_participants.id", ondelete="CASCADE")
    )
    answer_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("feedback_answers.id", ondelete="CASCADE")
    )
    item_id: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(Text)
    position: Mapped[int | None] = mapped_column(Integer)
    opponent: Mapped[str | None] = mapped_column(String(200))
    thumbs: Mapped[bool | None] = mapped_column(Boolean)
    likert: Mapped[int | None] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    correction: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(DocumentJSON)
    arena_outcome: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
