"""Sharding without a cluster: shard plans, the sharded cache, the executor seam, bad options.

Shards here are computed in this process by `ModelWorker` and handed back in reverse order (the
worst case for a pool), so these tests check that completion order cannot change an answer, a
cache row or a metric; the Ray tests check the same on a real cluster.
"""

from __future__ import annotations

import json
import random
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.errors import ConfigError, WhetstoneError
from whetstone.evaluate.cache import CHUNK, CachedModel
from whetstone.evaluate.engine import evaluate
from whetstone.evaluate.executor import Executor
from whetstone.models import load_model
from whetstone.models.base import GenerationRequest, LoglikelihoodRequest, RollingRequest
from whetstone.models.fake import FakeModel
from whetstone.scale import LocalExecutor, make_executor
from whetstone.scale.ray_cluster import FORWARDED_ENV, check_reachable, runtime_env
from whetstone.scale.ray_eval import RayExecutor
from whetstone.scale.shards import ShardedCachedModel, collect, plan_shards
from whetstone.scale.worker import ModelWorker
from whetstone.store import Store

SUITE = examples_dir() / "suite.yaml"
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


class ReversedDispatcher:
    """Computes every shard in this process with a ModelWorker and yields them last first."""

    def __init__(self, worker: ModelWorker) -> None:
        self.worker = worker
        self.shard_sizes: list[int] = []

    def run(self, kind: str, shards: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
        self.shard_sizes += [len(s) for s in shards]
        done = [(i, self.worker.compute(kind, s)) for i, s in enumerate(shards)]
        yield from reversed(done)


class ReversedExecutor(Executor):
    """An executor that shards in this process, out of order: the engine seam without Ray."""

    name = "reversed"

    def load(self, model: Any, options: dict[str, Any]) -> Any:
        self.worker = ModelWorker(model, options)
        return self.worker._model()

    def cached_model(self, model: Any, store: Store | None) -> CachedModel:
        self.dispatcher = ReversedDispatcher(self.worker)
        return ShardedCachedModel(model, store, self.dispatcher, shard_size=5)


def cache_table(db: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, request_hash, response FROM cache").fetchall()
    return {(kind, h): response for kind, h, response in rows}


def mc_requests(seed: int) -> list[LoglikelihoodRequest]:
    """Questions with 1 to 6 choices each, as a multiple-choice task builds them."""
    rng = random.Random(seed)
    return [
        LoglikelihoodRequest(f"Question {q}:", f" choice {c}")
        for q in range(rng.randint(1, 300))
        for c in range(rng.randint(1, 6))
    ]


# ---------------------------------------------------------------------------- shard plans


@pytest.mark.parametrize("kind", ["loglikelihood", "rolling", "generation"])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 33, 512, 513, 1500])
def test_default_shards_are_the_chunks_of_a_local_run(kind: str, n: int) -> None:
    bounds = plan_shards(kind, [LoglikelihoodRequest("same", " x")] * n)
    step = CHUNK[kind]
    assert bounds == [(lo, min(n, lo + step)) for lo in range(0, n, step)]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("size", [1, 3, 10, 100])
def test_sized_loglikelihood_shards_cover_every_request_and_never_split_a_context(
    seed: int, size: int
) -> None:
    requests = mc_requests(seed)
    bounds = plan_shards("loglikelihood", requests, size)
    assert [lo for lo, _ in bounds] == [0] + [hi for _, hi in bounds[:-1]]  # contiguous
    assert bounds[-1][1] == len(requests)
    for lo, hi in bounds:
        assert hi > lo
        # a shard holds `size` requests plus the rest of the context it ends in (< 6 choices)
        assert hi - lo <= size + 5
        if lo > 0:
            assert requests[lo - 1].context != requests[lo].context


@pytest.mark.parametrize(("n", "size"), [(1, 2), (7, 2), (42, 5), (42, 1), (1000, 64)])
def test_sized_rolling_and_generation_shards_hold_size_requests(n: int, size: int) -> None:
    for kind, request in (
        ("rolling", RollingRequest("text", 64, 64)),
        ("generation", GenerationRequest("prompt")),
    ):
        sizes = [hi - lo for lo, hi in plan_shards(kind, [request] * n, size)]
        assert sum(sizes) == n
        assert all(s == size for s in sizes[:-1]) and 0 < sizes[-1] <= size


def test_no_requests_make_no_shards() -> None:
    assert plan_shards("loglikelihood", [], 2) == plan_shards("rolling", []) == []


# ------------------------------------------------------------------ sharded cache model


class RecordingModel(FakeModel):
    """The fake model, recording the size of every batch of requests it is asked for."""

    calls: list[tuple[str, int]]

    def loglikelihood(self, requests: Any, progress: Any = None) -> Any:
        self.calls = [*getattr(self, "calls", []), ("loglikelihood", len(requests))]
        return super().loglikelihood(requests, progress)

    def loglikelihood_rolling(self, requests: Any, progress: Any = None) -> Any:
        self.calls = [*getattr(self, "calls", []), ("rolling", len(requests))]
        return super().loglikelihood_rolling(requests, progress)


def test_default_shards_give_the_model_the_batches_a_local_run_gives_it(tmp_path: Path) -> None:
    lls = [LoglikelihoodRequest(f"q{i % 300}", f" a{i}") for i in range(1300)]
    docs = [RollingRequest(f"doc {i} " * 5, 16, 16) for i in range(21)]
    local_model, worker = RecordingModel(seed=4), ModelWorker("fake:4", {})
    worker.model_ = RecordingModel(seed=4)
    local = CachedModel(local_model, None)
    sharded = ShardedCachedModel(local_model, None, ReversedDispatcher(worker))
    assert sharded.loglikelihood(lls) == local.loglikelihood(lls)
    assert sharded.loglikelihood_rolling(docs) == local.loglikelihood_rolling(docs)
    assert worker.model_.calls == local_model.calls  # same requests per model call
    assert local_model.calls == [("loglikelihood", n) for n in (512, 512, 276)] + [
        ("rolling", n) for n in (8, 8, 5)
    ]


def test_sharded_cache_answers_and_commits_what_the_local_cache_does(tmp_path: Path) -> None:
    fake = load_model("fake:3")
    lls = mc_requests(1)
    docs = [RollingRequest(f"document {i} " * (i + 1), 16, 8) for i in range(30)]
    gens = [GenerationRequest(f"prompt {i}", max_new_tokens=12, seed=i) for i in range(40)]

    local_db, sharded_db = tmp_path / "local.db", tmp_path / "sharded.db"
    local = CachedModel(fake, Store(f"sqlite:///{local_db}"))
    dispatcher = ReversedDispatcher(ModelWorker("fake:3", {}))
    sharded = ShardedCachedModel(fake, Store(f"sqlite:///{sharded_db}"), dispatcher, 7)
    progress: list[int] = []

    assert sharded.loglikelihood(lls, progress.append) == fake.loglikelihood(lls)
    assert sharded.loglikelihood_rolling(docs) == fake.loglikelihood_rolling(docs)
    assert sharded.generate(gens) == fake.generate(gens)
    local.loglikelihood(lls)
    local.loglikelihood_rolling(docs)
    local.generate(gens)
    assert sum(progress) == len(lls)
    assert len(dispatcher.shard_sizes) > 3  # it did shard
    assert sharded.computed == local.computed == len(lls) + len(docs) + len(gens)
    # the same rows under the same keys: local and sharded runs share one cache
    assert cache_table(sharded_db) == cache_table(local_db)

    again = ShardedCachedModel(fake, Store(f"sqlite:///{local_db}"), dispatcher, 7)
    assert again.loglikelihood(lls) == fake.loglikelihood(lls)
    assert (again.computed, again.reused) == (0, len(lls))


def test_collect_puts_out_of_order_shards_back_in_request_order() -> None:
    fake = load_model("fake:1")
    gens = [GenerationRequest(f"say {i}", max_new_tokens=5) for i in range(50)]
    counted: list[int] = []
    dispatcher = ReversedDispatcher(ModelWorker("fake:1", {}))
    out = collect(dispatcher, "generation", gens, counted.append, shard_size=6)
    assert out == fake.generate(gens)
    assert sum(counted) == 50 and dispatcher.shard_sizes == [6] * 8 + [2]


def test_worker_reports_the_model_it_loaded() -> None:
    worker = ModelWorker("fake:5", {})
    info = worker.start()
    assert info.identity == load_model("fake:5").identity
    assert info.pid == worker.pid()
    pid, answers = worker.run_shard("rolling", [RollingRequest("abc def", 8, 8)])
    assert answers == load_model("fake:5").loglikelihood_rolling([RollingRequest("abc def", 8, 8)])
    assert pid == info.pid


# ------------------------------------------------------------------------- the engine seam


def test_an_out_of_order_executor_gives_the_local_results(tmp_path: Path) -> None:
    local = evaluate("fake:0", [SUITE], limit=12, db=f"sqlite:///{tmp_path / 'a.db'}")
    executor = ReversedExecutor()
    sharded = evaluate(
        "fake:0", [SUITE], limit=12, db=f"sqlite:///{tmp_path / 'b.db'}", executor=executor
    )
    assert sharded.result.tasks == local.result.tasks
    assert [s.model_dump() for s in sharded.samples] == [s.model_dump() for s in local.samples]
    assert sharded.computed == local.computed
    assert len(executor.dispatcher.shard_sizes) > 8


def test_local_executor_is_the_default(tmp_path: Path) -> None:
    explicit = evaluate(
        "fake:2", [SUITE], limit=5, db=f"sqlite:///{tmp_path / 'a.db'}", executor=LocalExecutor()
    )
    default = evaluate("fake:2", [SUITE], limit=5, db=f"sqlite:///{tmp_path / 'b.db'}")
    assert explicit.result.tasks == default.result.tasks


# ---------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "dask"}, "--executor 'dask': expected one of local, ray"),
        ({"address": "10.0.0.1:6379"}, "--address applies to --executor ray only"),
        ({"workers": 2}, "--workers applies to --executor ray only"),
        ({"name": "ray", "workers": 0}, "--workers 0: expected at least 1"),
        ({"name": "ray", "cpus_per_worker": 0}, "--cpus-per-worker 0: expected more than 0"),
        ({"name": "ray", "gpus_per_worker": -1}, "--gpus-per-worker -1: expected 0 or more"),
        ({"name": "ray", "shard_size": 0}, "--shard-size 0: expected at least 1 request"),
        ({"shard_size": 8}, "--shard-size applies to --executor ray only"),
    ],
)
def test_bad_executor_options_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_executor(**kwargs)
    assert str(err.value) == message


def test_ray_executor_needs_a_spec_not_a_loaded_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass a model spec"):
        evaluate(
            load_model("fake"),
            [SUITE],
            limit=2,
            db=f"sqlite:///{tmp_path / 'w.db'}",
            executor=RayExecutor(),
        )
    assert Store(f"sqlite:///{tmp_path / 'w.db'}").list_runs() == []  # nothing half-stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--executor", "spark"], "--executor 'spark': expected one of local, ray"),
        (["--address", "auto"], "--address applies to --executor ray only"),
        (["--executor", "ray", "--workers", "0"], "--workers 0: expected at least 1"),
    ],
)
def test_cli_rejects_bad_executor_options(tmp_path: Path, args: list[str], message: str) -> None:
    db = tmp_path / "w.db"
    base = ["evaluate", "--model", "fake", "-t", str(SUITE), "--db", f"sqlite:///{db}"]
    result = CliRunner().invoke(app, [*base, *args], env=ENV)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {message}"
    assert not db.exists() or Store(f"sqlite:///{db}").list_runs() == []


def test_cli_local_run_prints_no_cluster_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["evaluate", "--model", "fake", "-t", str(SUITE), "--limit", "2", "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--db", f"sqlite:///{tmp_path / 'w.db'}", "--executor", "local"], env=ENV
    )
    assert result.exit_code == 0, result.stderr
    assert "ray:" not in result.stdout
    assert json.loads((out / "results.json").read_text())["tasks"]


def test_an_address_nothing_listens_on_fails_at_once() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(WhetstoneError) as err:
            check_reachable(address, timeout=2)
        assert str(err.value).startswith(f"--address {address}: cannot connect to a Ray cluster (")
    with socket.socket() as sock:  # and one that listens passes
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        check_reachable(f"127.0.0.1:{sock.getsockname()[1]}")
    check_reachable("auto")  # Ray resolves that one itself


def test_workers_get_the_forwarded_variables_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FORWARDED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    assert runtime_env("MY_KEY") == {}  # nothing set: plain workers
    monkeypatch.setenv("WHETSTONE_CACHE", "/data/cache")
    monkeypatch.setenv("MY_KEY", "k")
    assert runtime_env("MY_KEY") == {
        "runtime_env": {"env_vars": {"WHETSTONE_CACHE": "/data/cache", "MY_KEY": "k"}}
    }
