"""Result store on a temporary SQLite file; the round-trip tests also run on PostgreSQL.

test_postgres.py imports the tests that take the ``store_url``/``store`` fixtures and runs them
against a real server with its own fixtures.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import whetstone.feedback.tables  # its tables join the store's metadata
import whetstone.store
from whetstone.errors import WhetstoneError
from whetstone.records import MetricValue, ModelIdentity, RunResult, SampleRecord, TaskResult
from whetstone.store import Store, config_hash, request_hash
from whetstone.store.tables import Base

EXPECTED_COLUMNS = {
    "runs": [
        "run_id",
        "created_at",
        "finished_at",
        "status",
        "model_backend",
        "model_name",
        "model_hash",
        "model_dtype",
        "model_key",
        "config",
        "config_hash",
        "task_hashes",
        "versions",
        "seed",
        "timing",
        "results",
    ],
    "samples": ["id", "run_id", "task", "item_id", "record"],
    "cache": ["model_key", "kind", "request_hash", "response", "created_at"],
    "artifacts": ["id", "kind", "key", "created_at", "refs", "payload"],
    "feedback_owners": ["id", "name", "password_hash", "created_at"],
    "feedback_sessions": ["token_hash", "owner_id", "csrf", "created_at", "expires_at"],
    "feedback_campaigns": ["id", "name", "mode", "status", "config", "owner_id", "created_at"],
    "feedback_items": [
        "id",
        "campaign_id",
        "item_id",
        "seq",
        "prompt",
        "reference",
        "data",
        "created_at",
    ],
    "feedback_answers": [
        "id",
        "campaign_id",
        "item_id",
        "model",
        "model_version",
        "output",
        "status",
        "error",
        "created_at",
        "finished_at",
    ],
    "feedback_participants": [
        "id",
        "campaign_id",
        "name",
        "token_hash",
        "csrf",
        "created_at",
        "last_seen_at",
        "expires_at",
        "revoked_at",
    ],
    "feedback_units": [
        "id",
        "campaign_id",
        "key",
        "item_id",
        "model_a",
        "model_b",
        "seq",
        "participant_id",
    ],
    "feedback_conversations": ["id", "campaign_id", "participant_id", "model", "created_at"],
    "feedback_assignments": [
        "id",
        "campaign_id",
        "participant_id",
        "unit_id",
        "left_model",
        "status",
        "created_at",
        "done_at",
    ],
    "feedback_ratings": [
        "id",
        "campaign_id",
        "assignment_id",
        "participant_id",
        "answer_id",
        "item_id",
        "model",
        "model_version",
        "position",
        "opponent",
        "thumbs",
        "likert",
        "comment",
        "correction",
        "tags",
        "arena_outcome",
        "created_at",
    ],
    "alembic_version": ["version_num"],
}

MODEL = ModelIdentity(backend="hf", name="org/tiny:q4", hash="deadbeef", dtype="bfloat16")
SRC_DIR = Path(whetstone.store.__file__).resolve().parents[2]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The URL of a database that does not exist yet."""
    return f"sqlite:///{tmp_path / 'nested' / 'whetstone.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A store on a fresh database."""
    with Store(store_url) as opened:
        yield opened


def _sample(task: str, item: str, **kw: Any) -> SampleRecord:
    return SampleRecord(task=task, id=item, prompt=f"prompt {task}/{item}", **kw)


def _result(run_id: str) -> RunResult:
    return RunResult(
        run_id=run_id,
        model=MODEL,
        tasks={
            "arc": TaskResult(
                kind="multiple_choice",
                metrics={"acc": MetricValue(value=0.5, ci_low=0.25, ci_high=0.75, n=4)},
                tables={"confusion": [[1, 2], [3, 4]]},
                task_hash="abc",
            )
        },
        seed=7,
        started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 5, 5, tzinfo=UTC),
        config={"limit": 4},
        versions={"whetstone": "0.1.0"},
    )


def _create(store: Store, run_id: str, config: dict[str, object] | None = None) -> None:
    store.create_run(
        run_id,
        MODEL,
        config if config is not None else {"tasks": ["arc"], "limit": 4},
        {"arc": "f" * 64},
        {"whetstone": "0.1.0", "torch": "2.5"},
        seed=7,
    )


# --- round trips (also run on PostgreSQL) --------------------------------------------------


def test_schema_is_exactly_the_migrated_tables(store: Store, store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        assert tables == set(EXPECTED_COLUMNS)
        for table, columns in EXPECTED_COLUMNS.items():
            assert [c["name"] for c in insp.get_columns(table)] == columns, table
        assert insp.get_pk_constraint("cache")["constrained_columns"] == [
            "model_key",
            "kind",
            "request_hash",
        ]
        uniques = [u["column_names"] for u in insp.get_unique_constraints("samples")]
        assert ["run_id", "task", "item_id"] in uniques
        fks = insp.get_foreign_keys("samples")
        assert fks[0]["referred_table"] == "runs"
        assert fks[0]["options"].get("ondelete", "").upper() == "CASCADE"
        with engine.connect() as conn:
            # The hand-written migration and the models agree.
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_reopening_is_a_no_op(store: Store, store_url: str) -> None:
    _create(store, "r1")
    with Store(store_url) as again:
        assert again.get_run("r1") is not None


def test_opening_concurrently_migrates_once(store_url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(store_url).close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(store_url) as opened:
        assert opened.list_runs() == []


def test_run_round_trip(store: Store) -> None:
    config = {"tasks": ["arc"], "limit": 4, "path": Path("/x/y")}
    _create(store, "a1b2c3d4e5f6", config)
    row = store.get_run("a1b2c3d4e5f6")
    assert row is not None
    assert row.status == "running"
    assert row.model == MODEL
    assert row.config == {"tasks": ["arc"], "limit": 4, "path": "/x/y"}
    assert row.config_hash == config_hash(config)
    assert row.task_hashes == {"arc": "f" * 64}
    assert row.versions == {"whetstone": "0.1.0", "torch": "2.5"}
    assert row.seed == 7
    assert row.result is None and row.finished_at is None and row.timing is None
    assert row.created_at.tzinfo is not None

    result = _result("a1b2c3d4e5f6")
    store.finish_run("a1b2c3d4e5f6", result, {"arc": 1.25, "total": 2.5})
    row = store.get_run("a1b2c3d4e5f6")
    assert row is not None
    assert row.status == "finished"
    assert row.result == result
    assert row.timing == {"arc": 1.25, "total": 2.5}
    assert row.finished_at is not None and row.finished_at >= row.created_at

    with pytest.raises(WhetstoneError, match="already exists"):
        _create(store, "a1b2c3d4e5f6")


def test_fail_and_delete_run(store: Store) -> None:
    _create(store, "doomed")
    store.add_samples("doomed", [_sample("arc", "1"), _sample("arc", "2")])
    store.fail_run("doomed")
    row = store.get_run("doomed")
    assert row is not None and row.status == "failed" and row.finished_at is not None
    store.delete_run("doomed")
    assert store.get_run("doomed", missing_ok=True) is None
    assert store.get_samples("doomed") == []
    with pytest.raises(WhetstoneError, match="no run"):
        store.delete_run("doomed")
    with pytest.raises(WhetstoneError, match="no run"):
        store.fail_run("doomed")


def test_list_runs_newest_first(store: Store) -> None:
    for run_id in ["first", "second", "third"]:
        _create(store, run_id)
    assert [r.run_id for r in store.list_runs()] == ["third", "second", "first"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["third", "second"]


def test_prefix_lookup(store: Store) -> None:
    _create(store, "abc111")
    _create(store, "abc222")
    _create(store, "abd333")
    _create(store, "abc")
    row = store.get_run("abc2")
    assert row is not None and row.run_id == "abc222"
    # An exact id wins even when it is also a prefix of others.
    row = store.get_run("abc")
    assert row is not None and row.run_id == "abc"
    with pytest.raises(WhetstoneError, match=r"ambiguous.*abc111.*abc222"):
        store.get_run("ab")
    with pytest.raises(WhetstoneError, match="no run with id or prefix 'zzz'"):
        store.get_run("zzz")
    assert store.get_run("zzz", missing_ok=True) is None
    # LIKE wildcards in the prefix are literal.
    assert store.get_run("a_c", missing_ok=True) is None
    assert store.get_run("%", missing_ok=True) is None
    with pytest.raises(WhetstoneError, match="empty"):
        store.get_run("")
    assert store.resolve_run_id("abd") == "abd333"


def test_samples_round_trip_and_order(store: Store) -> None:
    _create(store, "run1")
    _create(store, "run2")
    store.add_samples(
        "run1",
        [
            _sample("zeta", "b", prediction="B", gold="B", metrics={"acc": 1.0}),
            _sample("alpha", "2", loglikelihoods=[-1.5, float("-inf")], extra={"k": [1, "ü"]}),
            _sample("zeta", "a", metrics={"acc": float("nan")}),
            _sample("alpha", "1", custom_field={"x": 1}),
        ],
    )
    store.add_samples("run2", [_sample("alpha", "1", prediction="other run")])

    samples = store.get_samples("run1")
    assert [(s.task, s.id) for s in samples] == [  # the order they were written in
        ("zeta", "b"),
        ("alpha", "2"),
        ("zeta", "a"),
        ("alpha", "1"),
    ]
    assert samples[1].loglikelihoods == [-1.5, float("-inf")]
    assert samples[1].extra == {"k": [1, "ü"]}
    assert samples[3].model_extra == {"custom_field": {"x": 1}}
    assert samples[0] == _sample("zeta", "b", prediction="B", gold="B", metrics={"acc": 1.0})
    nan = samples[2].metrics["acc"]
    assert nan != nan
    assert [s.id for s in store.get_samples("run1", task="zeta")] == ["b", "a"]
    assert store.get_samples("run1", task="missing") == []
    assert store.count_samples("run1") == {"alpha": 2, "zeta": 2}
    assert [s.prediction for s in store.get_samples("run2")] == ["other run"]


def test_sample_upsert_replaces(store: Store) -> None:
    _create(store, "run1")
    store.add_samples("run1", [_sample("t", "1", prediction="old"), _sample("t", "2")])
    store.add_samples(
        "run1",
        [
            _sample("t", "1", prediction="new"),
            _sample("t", "3", prediction="dup-first"),
            _sample("t", "3", prediction="dup-last"),
        ],
    )
    samples = store.get_samples("run1")
    # Replaced in place: the item keeps its position.
    assert [(s.id, s.prediction) for s in samples] == [
        ("1", "new"),
        ("2", None),
        ("3", "dup-last"),
    ]
    store.add_samples("run1", [])


def test_samples_need_a_run(store: Store) -> None:
    with pytest.raises(WhetstoneError, match="no-such-run"):
        store.add_samples("no-such-run", [_sample("t", "1")])


def test_find_unfinished_run(store: Store) -> None:
    config = {"tasks": ["arc"], "limit": 4}
    other = ModelIdentity(backend="hf", name="org/tiny:q4", hash="deadbeef", dtype="float32")
    assert store.find_unfinished_run(MODEL.key, config_hash(config)) is None
    _create(store, "old", config)
    _create(store, "new", config)
    _create(store, "otherconfig", {"tasks": ["arc"], "limit": 5})
    store.create_run("othermodel", other, config, {}, {}, seed=7)
    assert store.find_unfinished_run(MODEL.key, config_hash(config)) == "new"
    # Key order does not change the hash.
    assert store.find_unfinished_run(MODEL.key, config_hash({"limit": 4, "tasks": ["arc"]})) == (
        "new"
    )
    store.finish_run("new", _result("new"), {})
    assert store.find_unfinished_run(MODEL.key, config_hash(config)) == "old"
    store.fail_run("old")
    assert store.find_unfinished_run(MODEL.key, config_hash(config)) is None
    assert store.find_unfinished_run(other.key, config_hash(config)) == "othermodel"


def test_cache_round_trip(store: Store) -> None:
    key = MODEL.key
    items = {request_hash({"i": i}): {"ll": -float(i), "greedy": i % 2 == 0} for i in range(1200)}
    store.cache_put(key, "loglikelihood", items)
    hashes = [*items, "0" * 64]
    assert store.cache_get(key, "loglikelihood", hashes) == items
    # Other kinds and models do not see it.
    assert store.cache_get(key, "generation", hashes) == {}
    assert store.cache_get("hf:other:x:", "loglikelihood", hashes) == {}
    assert store.cache_get(key, "loglikelihood", []) == {}

    # Insert-or-ignore: the first response stays; new ones are added.
    first = next(iter(items))
    store.cache_put(key, "loglikelihood", {first: {"ll": 99.0}, "h-new": "ünïcode ✓"})
    got = store.cache_get(key, "loglikelihood", [first, "h-new", first])
    assert got == {first: items[first], "h-new": "ünïcode ✓"}

    odd = {"inf": [float("-inf"), 0.1], "none": None, "nested": {"a": [1, {"b": None}]}}
    store.cache_put(key, "rolling", odd)
    assert store.cache_get(key, "rolling", list(odd)) == odd
    store.cache_put(key, "rolling", {})


def test_request_hash_is_canonical() -> None:
    assert request_hash({"b": 1, "a": "é"}) == request_hash({"a": "é", "b": 1})
    # sha256 of '{"a":"é","b":1}' in UTF-8
    assert request_hash({"b": 1, "a": "é"}) == (
        "aa58fba8483623bed37c1b02edfccbdd9a53123837c20bfa4cb4049993a2872e"
    )


# --- SQLite only ---------------------------------------------------------------------------


def test_second_store_sees_the_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with Store(url) as writer, Store(url) as reader:
        _create(writer, "shared")
        writer.add_samples("shared", [_sample("t", "1")])
        writer.cache_put("m", "generation", {"h": "text"})
        row = reader.get_run("shared")
        assert row is not None and row.model == MODEL
        assert [s.id for s in reader.get_samples("shared")] == ["1"]
        assert reader.cache_get("m", "generation", ["h"]) == {"h": "text"}


def test_wal_mode_and_readers_not_blocked_by_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    with Store(f"sqlite:///{path}") as store:
        _create(store, "visible")
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            # Another process holds the write lock with an uncommitted run...
            raw.execute("BEGIN IMMEDIATE")
            raw.execute(
                "INSERT INTO runs (run_id, created_at, status, model_backend, model_name,"
                " model_hash, model_dtype, model_key, config, config_hash, task_hashes,"
                " versions, seed) VALUES ('hidden', '2026-01-01 00:00:00', 'running',"
                " 'b', 'n', 'h', '', 'b:n:h:', '{}', 'x', '{}', '{}', 0)"
            )
            # ...and two readers still read the committed state.
            with Store(f"sqlite:///{path}") as other:
                assert [r.run_id for r in other.list_runs()] == ["visible"]
                assert [r.run_id for r in store.list_runs()] == ["visible"]
            raw.execute("COMMIT")
            assert {r.run_id for r in store.list_runs()} == {"visible", "hidden"}
        finally:
            raw.close()


def test_default_url_from_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WHETSTONE_DB", raising=False)
    with Store() as store:
        assert store.url == f"sqlite:///{tmp_path / 'whetstone.db'}"
        # The file stays the one opened when the process changes directory.
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
        store.close()  # new connections from here on
        _create(store, "in-cwd")
    assert not (tmp_path / "elsewhere" / "whetstone.db").exists()
    with Store(f"sqlite:///{tmp_path / 'whetstone.db'}") as store:
        assert store.get_run("in-cwd") is not None
    monkeypatch.setenv("WHETSTONE_DB", f"sqlite:///{tmp_path / 'env' / 'from_env.db'}")
    with Store() as store:
        _create(store, "x")
    assert (tmp_path / "env" / "from_env.db").exists()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "not a database URL"),
        ("mysql://root@localhost/db", "unsupported database 'mysql'"),
        ("postgresql+psycopg://alice:s3cret@127.0.0.1:1/db", "expected a reachable postgresql"),
        ("postgres://alice:s3cret@127.0.0.1:1/db", "expected a reachable postgresql"),
        ("sqlite:////proc/no/such/dir/x.db", "expected a writable directory"),
    ],
)
def test_bad_urls_give_one_line(url: str, expected: str) -> None:
    with pytest.raises(WhetstoneError) as info:
        Store(url)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert "s3cret" not in message
    assert "cannot open the result store at" in message


_WRITER = """
import sys, time
from whetstone.store import Store
store = Store(sys.argv[1])
i = 0
while True:
    store.cache_put("m", "loglikelihood", {f"h{i}-{j}": [i, j] for j in range(50)})
    print(i, flush=True)
    i += 1
"""


def test_committed_cache_rows_survive_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    paths = [str(SRC_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    committed = -1
    try:
        for line in proc.stdout:
            committed = int(line)
            if committed >= 20:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert committed >= 20
    with Store(url) as store:
        wanted = [f"h{i}-{j}" for i in range(committed + 1) for j in range(50)]
        got = store.cache_get("m", "loglikelihood", wanted)
        assert len(got) == len(wanted)
        assert got["h20-49"] == [20, 49]
        # The database is intact and still writable.
        store.cache_put("m", "loglikelihood", {"after": 1})
        assert store.cache_get("m", "loglikelihood", ["after"]) == {"after": 1}
    raw = sqlite3.connect(tmp_path / "killed.db")
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()


def test_artifacts_round_trip_replace_and_list(store: Store) -> None:
    first = store.put_artifact("diagnosis", "d1", {"categories": [{"name": "x", "n": 1.5}]}, ["r1"])
    store.put_artifact("audit", "a1", {"n": 3})
    again = store.put_artifact("diagnosis", "d1", {"categories": []}, ["r1", "r2"])
    assert again == first  # replaced in place, same row
    row = store.get_artifact("diagnosis", "d1")
    assert row is not None
    assert row.payload == {"categories": []}
    assert row.refs == ["r1", "r2"]
    assert row.created_at.tzinfo is not None
    assert store.get_artifact("diagnosis", "missing") is None
    assert [a.key for a in store.list_artifacts("audit")] == ["a1"]
    assert {a.kind for a in store.list_artifacts()} == {"diagnosis", "audit"}
    assert store.delete_artifact("audit", "a1") is True
    assert store.delete_artifact("audit", "a1") is False
    assert store.list_artifacts("audit") == []
