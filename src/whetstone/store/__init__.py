"""The result store: runs, samples and the model response cache (SQLite or PostgreSQL)."""

from __future__ import annotations

from whetstone.store.db import (
    DEFAULT_URL,
    URL_ENV,
    ArtifactRow,
    RunRow,
    RunStatus,
    Store,
    alembic_config,
    config_hash,
    request_hash,
)

__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "ArtifactRow",
    "RunRow",
    "RunStatus",
    "Store",
    "alembic_config",
    "config_hash",
    "request_hash",
]
