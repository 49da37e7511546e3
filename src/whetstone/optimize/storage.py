"""Optuna's RDB storage inside the whetstone database (SQLite file or PostgreSQL).

Optuna's tables (``studies``, ``trials``, ...) sit beside whetstone's (``runs``, ``samples``,
``artifacts``) in the same database, so one URL holds the whole loop; several worker processes
or machines pointing at one PostgreSQL URL share a study, and ``optuna-dashboard URL`` reads it.
Both use Alembic's default version table: whetstone's migrations own it, so the store is opened
(and migrated) first and Optuna's storage skips its own version check (as optuna-dashboard does).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from whetstone.errors import WhetstoneError, missing_extra
from whetstone.store import DEFAULT_URL, URL_ENV, Store


def database_url(db: str | None) -> str:
    """The full database URL (password included) of ``db`` / $WHETSTONE_DB / the default, with
    a SQLite path made absolute and plain ``postgresql://`` using the psycopg driver."""
    import os

    from sqlalchemy.engine import make_url

    raw = db or os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        url = make_url(raw)
    except Exception as exc:
        raise WhetstoneError(f"database URL {raw!r}: not a SQLAlchemy URL") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    database = url.database or ""
    local = database not in ("", ":memory:") and not database.startswith("file:")
    if url.get_backend_name() == "sqlite" and local:
        path = Path(database).expanduser()
        url = url.set(database=str(path if path.is_absolute() else Path.cwd() / path))
    return url.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with its password hidden (for reports)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(
    url: str,
    *,
    in_store: bool = True,
    heartbeat: int | None = None,
    grace: int | None = None,
    retries: int = 1,
) -> Any:
    """Optuna's RDB storage at ``url``; with ``in_store`` (the whetstone database) the store is
    opened and migrated first.

    With ``heartbeat``, a running trial writes a heartbeat every that many seconds; a trial
    silent for ``grace`` seconds (its worker died) is marked failed and retried ``retries``
    times with the same parameters.
    """
    try:
        import optuna
    except ImportError as exc:
        raise missing_extra("optuna", "optimize") from exc
    if in_store:
        Store(url).close()
    kwargs: dict[str, Any] = {}
    if heartbeat is not None:
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        retry = retry or optuna.storages.RetryFailedTrialCallback
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = retry(max_retry=retries)
        kwargs = {
            "heartbeat_interval": heartbeat,
            "grace_period": grace,
            "heartbeat_stale_trial_callback": callback,
        }
    engine: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, skip_compatibility_check=in_store, **kwargs
            )
    except Exception as exc:
        raise WhetstoneError(f"Optuna storage {safe_url(url)!r}: {exc}") from exc
