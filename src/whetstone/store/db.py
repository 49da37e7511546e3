"""The result store: runs, per-item samples and the model response cache in SQLite or PostgreSQL.

Opening a Store brings the schema up to date with Alembic (no alembic.ini: the configuration is
built here). SQLite files run in WAL mode with a busy timeout, so a killed writer never corrupts
the file and readers do not block each other; every method commits before it returns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, Field
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

from whetstone.errors import WhetstoneError, missing_extra
from whetstone.records import ModelIdentity, RunResult, SampleRecord
from whetstone.store.tables import ArtifactTable, CacheTable, RunTable, SampleTable

DEFAULT_URL = "sqlite:///whetstone.db"
#: Environment variable naming the database URL when Store() gets none.
URL_ENV = "WHETSTONE_DB"
#: How long a connection waits for another process's lock before giving up (seconds).
BUSY_TIMEOUT_S = 30.0
#: Request hashes per ``IN (...)`` query: well under SQLite's bound-variable limit.
CACHE_CHUNK = 500

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_EXPECTED = "a SQLAlchemy URL such as sqlite:///whetstone.db or postgresql+psycopg://user@host/db"
_PG_MIGRATION_LOCK = 0x77687374  # "whst": advisory lock id held while migrating

RunStatus = Literal["running", "finished", "failed"]

_runs = cast(Table, RunTable.__table__)
_samples = cast(Table, SampleTable.__table__)
_cache = cast(Table, CacheTable.__table__)
_artifacts = cast(Table, ArtifactTable.__table__)


def request_hash(obj: Any) -> str:
    """The sha256 hex digest of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _jsonable(obj: Any) -> Any:
    """``obj`` with paths, datetimes, models and the like turned into JSON values."""
    import pydantic_core

    return pydantic_core.to_jsonable_python(obj, fallback=str)


def config_hash(config: dict[str, Any]) -> str:
    """The hash stored in ``runs.config_hash``: request_hash of the JSON form of ``config``."""
    return request_hash(_jsonable(config))


# --- JSON encoding --------------------------------------------------------------------------
# PostgreSQL's JSON types reject NaN and ±Infinity, which loglikelihoods can be; they are
# stored as {"$float": "nan" | "inf" | "-inf"} on every dialect and decoded back on reading.

_FLOAT_TAG = "$float"


def _tag_floats(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by tagged objects."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT_TAG: repr(obj)}
    if isinstance(obj, dict):
        return {k: _tag_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_tag_floats(v) for v in obj]
    return obj


def _untag(obj: dict[str, Any]) -> Any:
    """The float a tagged object stands for, or the object itself."""
    if len(obj) == 1 and _FLOAT_TAG in obj and isinstance(obj[_FLOAT_TAG], str):
        return float(obj[_FLOAT_TAG])
    return obj


def _json_dumps(obj: Any) -> str:
    """Serialize a JSON column value."""
    return json.dumps(_tag_floats(obj), ensure_ascii=False, allow_nan=False)


def _json_loads(data: str | bytes) -> Any:
    """Deserialize a JSON column value."""
    return json.loads(data, object_hook=_untag)


# --- URLs and errors -----------------------------------------------------------------------


def _safe(url: str | URL) -> str:
    """The URL with any password hidden."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (the driver's, when wrapped)."""
    orig = getattr(err, "orig", None) or err
    for line in str(orig).splitlines():
        if line.strip():
            return line.strip()
    return type(orig).__name__


def _normalize_url(raw: str) -> URL:
    """Parse a database URL; plain postgresql:// and postgres:// use the psycopg (v3) driver."""
    try:
        url = make_url(raw)
    except (sa_exc.ArgumentError, ValueError) as err:
        raise WhetstoneError(
            f"cannot open the result store at {_safe(raw)!r}: not a database URL; "
            f"expected {_EXPECTED}"
        ) from err
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise WhetstoneError(
            f"cannot open the result store at {_safe(url)!r}: unsupported database "
            f"{url.get_backend_name()!r}; expected {_EXPECTED}"
        )
    return url


def _absolute_sqlite(url: URL) -> URL:
    """A SQLite URL with its file path made absolute (so a later chdir does not move it)."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return url
    if database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    return url.set(database=str(path if path.is_absolute() else Path.cwd() / path))


def _as_utc(value: datetime | None) -> datetime | None:
    """A datetime from the database, made timezone-aware (SQLite returns naive UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


# --- Alembic -------------------------------------------------------------------------------


def alembic_config() -> Config:
    """An Alembic configuration pointing at the store's migrations (no alembic.ini)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


@functools.cache
def _head_revision() -> str | None:
    """The newest migration revision shipped with this package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


# --- Records -------------------------------------------------------------------------------


class ArtifactRow(BaseModel):
    """One stored artifact: a step's JSON result with what it was made from."""

    id: int
    kind: str
    key: str
    created_at: datetime
    refs: list[str] = Field(default_factory=list)
    payload: dict[str, Any]


class RunRow(BaseModel):
    """One row of the runs table, as returned by Store.get_run and Store.list_runs."""

    run_id: str
    created_at: datetime
    finished_at: datetime | None = None
    status: RunStatus
    model: ModelIdentity
    config: dict[str, Any] = Field(default_factory=dict)
    config_hash: str = ""
    task_hashes: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    timing: dict[str, Any] | None = None
    result: RunResult | None = None


def _run_row(row: Any) -> RunRow:
    """A RunRow from a row of the runs table."""
    created_at = _as_utc(row.created_at)
    assert created_at is not None
    return RunRow(
        run_id=row.run_id,
        created_at=created_at,
        finished_at=_as_utc(row.finished_at),
        status=row.status,
        model=ModelIdentity(
            backend=row.model_backend,
            name=row.model_name,
            hash=row.model_hash,
            dtype=row.model_dtype,
        ),
        config=row.config or {},
        config_hash=row.config_hash,
        task_hashes=row.task_hashes or {},
        versions=row.versions or {},
        seed=row.seed,
        timing=row.timing,
        result=None if row.results is None else RunResult.model_validate(row.results),
    )


# --- The store -----------------------------------------------------------------------------


class Store:
    """Runs, samples and the response cache in one SQLite or PostgreSQL database."""

    def __init__(self, url: str | None = None) -> None:
        """Open (creating and migrating as needed) the database at ``url``.

        ``url`` defaults to $WHETSTONE_DB, else ``sqlite:///whetstone.db`` in the current
        directory. Raises WhetstoneError when the URL is malformed or the database unreachable.
        """
        raw = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self._url = _absolute_sqlite(_normalize_url(raw))
        self.url = _safe(self._url)
        self.dialect = self._url.get_backend_name()
        self._engine = self._create_engine()
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    # -- opening --

    def _create_engine(self) -> Engine:
        """The engine for this URL, with SQLite's pragmas and transaction handling set up."""
        url = self._url
        try:
            if self.dialect == "sqlite":
                database = url.database or ""
                if database and database != ":memory:" and not database.startswith("file:"):
                    try:
                        Path(database).parent.mkdir(parents=True, exist_ok=True)
                    except OSError as err:
                        raise WhetstoneError(
                            f"cannot open the result store at {self.url!r}: cannot create "
                            f"{str(Path(database).parent)!r} ({err.strerror or err}); "
                            "expected a writable directory"
                        ) from err
                engine = create_engine(
                    url,
                    json_serializer=_json_dumps,
                    json_deserializer=_json_loads,
                    connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
                )
                _configure_sqlite(engine)
                return engine
            connect_args: dict[str, Any] = {}
            if "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = 10
            return create_engine(
                url,
                json_serializer=_json_dumps,
                json_deserializer=_json_loads,
                connect_args=connect_args,
                pool_pre_ping=True,
            )
        except ModuleNotFoundError as err:
            if "psycopg" in str(err):
                raise missing_extra("psycopg", "postgres") from err
            raise WhetstoneError(
                f"cannot open the result store at {self.url!r}: missing driver ({err}); "
                f"expected {_EXPECTED}"
            ) from err
        except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as err:
            raise WhetstoneError(
                f"cannot open the result store at {self.url!r}: {_first_line(err)}; "
                f"expected {_EXPECTED}"
            ) from err

    def _migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``), once per DB."""
        head = _head_revision()
        try:
            with self._engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
                conn.rollback()
            if current == head:
                return
            # Another process may be migrating too: take the database's write lock first
            # (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); Alembic then finds
            # the revision the other one left and does only what is still missing.
            with self._engine.connect() as conn:
                conn.execution_options(whetstone_immediate=True)
                with conn.begin():
                    if self.dialect == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _PG_MIGRATION_LOCK},
                        )
                    cfg = alembic_config()
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as err:
            raise WhetstoneError(
                f"cannot open the result store at {self.url!r}: {_first_line(err)}; "
                f"expected a reachable {self.dialect} database"
            ) from err
        except sa_exc.DBAPIError as err:
            raise WhetstoneError(
                f"cannot open the result store at {self.url!r}: {_first_line(err)}; "
                f"expected a {self.dialect} database that whetstone can write to"
            ) from err

    def close(self) -> None:
        """Close every pooled connection (SQLite then checkpoints its WAL)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        """Use the store in a ``with`` block; it is closed at the end."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()

    def __repr__(self) -> str:
        """The store's URL, password hidden."""
        return f"Store({self.url!r})"

    # -- transactions --

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection in a read transaction."""
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except sa_exc.OperationalError as err:
            raise WhetstoneError(f"result store {self.url!r}: {_first_line(err)}") from err

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(whetstone_immediate=True)
                with conn.begin():
                    yield conn
        except sa_exc.OperationalError as err:
            raise WhetstoneError(f"result store {self.url!r}: {_first_line(err)}") from err

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which has on_conflict_do_update/do_nothing."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- runs --

    def create_run(
        self,
        run_id: str,
        model: ModelIdentity,
        config: dict[str, Any],
        task_hashes: dict[str, Any],
        versions: dict[str, Any],
        seed: int,
    ) -> None:
        """Record a new run with status "running"; raises WhetstoneError if the id exists."""
        config_json = _jsonable(config)
        values = {
            "run_id": run_id,
            "created_at": _now(),
            "finished_at": None,
            "status": "running",
            "model_backend": model.backend,
            "model_name": model.name,
            "model_hash": model.hash,
            "model_dtype": model.dtype,
            "model_key": model.key,
            "config": config_json,
            "config_hash": request_hash(config_json),
            "task_hashes": _jsonable(task_hashes),
            "versions": _jsonable(versions),
            "seed": seed,
            "timing": None,
            "results": None,
        }
        try:
            with self._write() as conn:
                conn.execute(_runs.insert().values(**values))
        except sa_exc.IntegrityError as err:
            raise WhetstoneError(f"run {run_id!r} already exists in {self.url!r}") from err

    def _set_run(self, run_id: str, **values: Any) -> None:
        """Update one run's columns; raises WhetstoneError if there is no such run."""
        with self._write() as conn:
            result = conn.execute(update(_runs).where(_runs.c.run_id == run_id).values(**values))
            if result.rowcount == 0:
                raise WhetstoneError(f"no run {run_id!r} in {self.url!r}")

    def finish_run(self, run_id: str, result: RunResult, timing: dict[str, Any]) -> None:
        """Mark a run finished and store its RunResult and timing."""
        self._set_run(
            run_id,
            status="finished",
            finished_at=_now(),
            results=result.model_dump(mode="json"),
            timing=_jsonable(timing),
        )

    def fail_run(self, run_id: str) -> None:
        """Mark a run failed (its samples stay, so it can be inspected)."""
        self._set_run(run_id, status="failed", finished_at=_now())

    def delete_run(self, run_id: str) -> None:
        """Delete a run (exact id) and all its samples; raises WhetstoneError if unknown."""
        with self._write() as conn:
            conn.execute(delete(_samples).where(_samples.c.run_id == run_id))
            result = conn.execute(delete(_runs).where(_runs.c.run_id == run_id))
            if result.rowcount == 0:
                raise WhetstoneError(f"no run {run_id!r} in {self.url!r}")

    def resolve_run_id(self, run_id: str) -> str | None:
        """The full id of the run whose id is or starts with ``run_id``; None if none does.

        Raises WhetstoneError when the prefix matches more than one run.
        """
        if not run_id:
            raise WhetstoneError("empty run id")
        with self._read() as conn:
            exact = conn.execute(
                select(_runs.c.run_id).where(_runs.c.run_id == run_id)
            ).scalar_one_or_none()
            if exact is not None:
                return str(exact)
            matches = list(
                conn.execute(
                    select(_runs.c.run_id)
                    .where(_runs.c.run_id.startswith(run_id, autoescape=True))
                    .order_by(_runs.c.run_id)
                    .limit(6)
                ).scalars()
            )
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise WhetstoneError(
                f"run id prefix {run_id!r} is ambiguous: it matches {shown}; give more characters"
            )
        return str(matches[0]) if matches else None

    def get_run(self, run_id: str, *, missing_ok: bool = False) -> RunRow | None:
        """The run with this id or unique id prefix.

        Raises WhetstoneError when the prefix is ambiguous, and when no run matches unless
        ``missing_ok`` (then returns None).
        """
        full = self.resolve_run_id(run_id)
        if full is None:
            if missing_ok:
                return None
            raise WhetstoneError(f"no run with id or prefix {run_id!r} in {self.url!r}")
        with self._read() as conn:
            row = conn.execute(select(_runs).where(_runs.c.run_id == full)).one_or_none()
        if row is None:  # deleted in between
            if missing_ok:
                return None
            raise WhetstoneError(f"no run with id or prefix {run_id!r} in {self.url!r}")
        return _run_row(row)

    def list_runs(self, limit: int = 50) -> list[RunRow]:
        """The newest ``limit`` runs, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                select(_runs).order_by(_runs.c.created_at.desc(), _runs.c.run_id).limit(limit)
            ).all()
        return [_run_row(row) for row in rows]

    def find_unfinished_run(self, model_key: str, config_hash: str) -> str | None:
        """The newest still-running run with this model key and config hash (for --resume)."""
        with self._read() as conn:
            found = conn.execute(
                select(_runs.c.run_id)
                .where(
                    _runs.c.model_key == model_key,
                    _runs.c.config_hash == config_hash,
                    _runs.c.status == "running",
                )
                .order_by(_runs.c.created_at.desc())
                .limit(1)
            ).scalar_one_or_none()
        return None if found is None else str(found)

    # -- samples --

    def add_samples(self, run_id: str, samples: Sequence[SampleRecord]) -> None:
        """Insert or replace (by task and id) a run's samples, all in one transaction."""
        if not samples:
            return
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for sample in samples:  # the last of duplicates wins, as it would one by one
            rows[(sample.task, sample.id)] = {
                "run_id": run_id,
                "task": sample.task,
                "item_id": sample.id,
                "record": sample.model_dump(mode="json"),
            }
        stmt = self._insert(_samples)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "task", "item_id"],
            set_={"record": stmt.excluded.record},
        )
        try:
            with self._write() as conn:
                conn.execute(stmt, list(rows.values()))
        except sa_exc.IntegrityError as err:
            raise WhetstoneError(
                f"cannot add samples to run {run_id!r} in {self.url!r}: {_first_line(err)}"
            ) from err

    def get_samples(self, run_id: str, task: str | None = None) -> list[SampleRecord]:
        """A run's samples (of one task if given) in the order they were written."""
        query = select(_samples.c.record).where(_samples.c.run_id == run_id)
        if task is not None:
            query = query.where(_samples.c.task == task)
        with self._read() as conn:
            records = conn.execute(query.order_by(_samples.c.id)).scalars()
            return [SampleRecord.model_validate(r) for r in records]

    def count_samples(self, run_id: str) -> dict[str, int]:
        """How many samples a run has per task."""
        with self._read() as conn:
            rows = conn.execute(
                select(_samples.c.task, func.count())
                .where(_samples.c.run_id == run_id)
                .group_by(_samples.c.task)
            ).all()
        return {str(task): int(n) for task, n in rows}

    # -- cache --

    def cache_get(self, model_key: str, kind: str, request_hashes: Sequence[str]) -> dict[str, Any]:
        """The cached responses for those request hashes that have one, by hash."""
        found: dict[str, Any] = {}
        wanted = list(dict.fromkeys(request_hashes))
        if not wanted:
            return found
        with self._read() as conn:
            for start in range(0, len(wanted), CACHE_CHUNK):
                chunk = wanted[start : start + CACHE_CHUNK]
                rows = conn.execute(
                    select(_cache.c.request_hash, _cache.c.response).where(
                        _cache.c.model_key == model_key,
                        _cache.c.kind == kind,
                        _cache.c.request_hash.in_(chunk),
                    )
                )
                found.update({str(h): response for h, response in rows})
        return found

    def cache_put(self, model_key: str, kind: str, items: dict[str, Any]) -> None:
        """Store responses by request hash (existing entries are kept); committed on return."""
        if not items:
            return
        now = _now()
        rows = [
            {
                "model_key": model_key,
                "kind": kind,
                "request_hash": h,
                "response": _jsonable(response),
                "created_at": now,
            }
            for h, response in items.items()
        ]
        stmt = self._insert(_cache).on_conflict_do_nothing(
            index_elements=["model_key", "kind", "request_hash"]
        )
        with self._write() as conn:
            conn.execute(stmt, rows)

    # -- artifacts --

    def put_artifact(
        self, kind: str, key: str, payload: dict[str, Any], refs: Sequence[str] = ()
    ) -> int:
        """Store (or replace) the artifact ``kind``/``key``; returns its row id."""
        values = {
            "kind": kind,
            "key": key,
            "created_at": _now(),
            "refs": list(refs),
            "payload": _jsonable(payload),
        }
        stmt = self._insert(_artifacts).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["kind", "key"],
            set_={k: stmt.excluded[k] for k in ("created_at", "refs", "payload")},
        )
        with self._write() as conn:
            conn.execute(stmt)
            row_id = conn.execute(
                select(_artifacts.c.id).where(_artifacts.c.kind == kind, _artifacts.c.key == key)
            ).scalar_one()
        return int(row_id)

    def get_artifact(self, kind: str, key: str) -> ArtifactRow | None:
        """The artifact ``kind``/``key``, or None."""
        with self._read() as conn:
            row = conn.execute(
                select(_artifacts).where(_artifacts.c.kind == kind, _artifacts.c.key == key)
            ).first()
        return None if row is None else _artifact_row(row)

    def list_artifacts(self, kind: str | None = None, limit: int = 100) -> list[ArtifactRow]:
        """The newest artifacts (of one kind if given), newest first."""
        query = select(_artifacts).order_by(_artifacts.c.created_at.desc(), _artifacts.c.id.desc())
        if kind is not None:
            query = query.where(_artifacts.c.kind == kind)
        with self._read() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [_artifact_row(row) for row in rows]

    def delete_artifact(self, kind: str, key: str) -> bool:
        """Delete the artifact ``kind``/``key``; True if there was one."""
        with self._write() as conn:
            result = conn.execute(
                delete(_artifacts).where(_artifacts.c.kind == kind, _artifacts.c.key == key)
            )
        return bool(result.rowcount)


def _artifact_row(row: Any) -> ArtifactRow:
    """An ArtifactRow from a result row of the artifacts table."""
    m = row._mapping
    created_at = _as_utc(m["created_at"])
    assert created_at is not None  # the column is NOT NULL
    return ArtifactRow(
        id=int(m["id"]),
        kind=m["kind"],
        key=m["key"],
        created_at=created_at,
        refs=list(m["refs"] or []),
        payload=dict(m["payload"]),
    )


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout and foreign keys on every connection; real BEGINs for transactions.

    pysqlite's own transaction handling does not wrap DDL and starts transactions lazily, so
    it is switched off and SQLAlchemy emits BEGIN (or BEGIN IMMEDIATE for writes, which takes
    the write lock up front and so waits on the busy timeout instead of failing to upgrade).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("whetstone_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
