"""SQLAlchemy models of the result store: runs, their samples, and the model response cache.

The Alembic migrations under ``store/migrations/versions`` create exactly these tables; a test
checks that the two agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Deterministic constraint names, so migrations can refer to them on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A JSON document; SQL NULL for Python None (used by nullable columns).
NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
#: A JSON document that is never SQL NULL (Python None is stored as JSON ``null``).
DocumentJSON = JSON().with_variant(JSONB(), "postgresql")
#: An autoincrementing integer key: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
RowId = BigInteger().with_variant(Integer(), "sqlite")

RUN_STATUSES = ("running", "finished", "failed")


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunTable(Base):
    """One evaluation run: who ran what, with which inputs, and (once finished) its results."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'finished', 'failed')",
            name="status",
        ),
        Index("ix_runs_resume", "model_key", "config_hash", "status"),
        Index("ix_runs_created_at", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    model_backend: Mapped[str] = mapped_column(Text)
    model_name: Mapped[str] = mapped_column(Text)
    model_hash: Mapped[str] = mapped_column(Text)
    model_dtype: Mapped[str] = mapped_column(Text)
    model_key: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
    config_hash: Mapped[str] = mapped_column(String(64))
    task_hashes: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
    versions: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    timing: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)
    results: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON)


class SampleTable(Base):
    """One evaluated item of a run: the SampleRecord dump, unique per (run, task, item)."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("run_id", "task", "item_id"),)

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), ForeignKey("runs.run_id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str] = mapped_column(Text)
    record: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)


class CacheTable(Base):
    """A model response, keyed by the model's identity, the request kind and the request hash."""

    __tablename__ = "cache"

    model_key: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    response: Mapped[Any] = mapped_column(DocumentJSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ArtifactTable(Base):
    """A JSON result of a later step (diagnosis, audit, study, distillation, pipeline stage).

    Unique per (kind, key); ``refs`` lists the run ids or other artifacts it was made from.
    """

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("kind", "key"),
        Index("ix_artifacts_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refs: Mapped[list[str]] = mapped_column(DocumentJSON)
    payload: Mapped[dict[str, Any]] = mapped_column(DocumentJSON)
