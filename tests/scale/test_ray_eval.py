"""Evaluation on a real local Ray cluster (2 CPUs, 2 workers) against the local executor.

The reference is a run of the local executor on the same suite; a Ray run must give the same
bytes in samples.jsonl, the same metrics and intervals in results.json, the same samples in the
database and the same rows in the response cache, also when a worker process is killed (SIGKILL)
in the middle of the run. `fake:0:DELAY` is the bigram model of `fake:0` slowed down: it has the
same identity and answers, so its runs compare with the instant one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from whetstone.data import examples_dir
from whetstone.errors import ConfigError, ModelError
from whetstone.evaluate.engine import Evaluation, evaluate
from whetstone.models.base import RollingRequest
from whetstone.models.fake import FakeModel
from whetstone.scale.ray_eval import RayExecutor
from whetstone.store import Store

pytestmark = pytest.mark.slow

SUITE = examples_dir() / "suite.yaml"
LIMIT = 20
REQUESTS = 220  # 20 documents, 80 choices, 100 intent labels, 20 generations
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def cache_rows(db: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, request_hash, response FROM cache").fetchall()
    return {(kind, h): response for kind, h, response in rows}


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM cache").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0


def assert_same_run(out: Path, reference: Path, spec: str = "fake:0") -> None:
    """Byte-identical samples; results.json equal but for the run's id and times.

    `spec` is the model spec of the run at `out` (a slowed-down `fake:0` is the same model).
    """
    assert (out / "samples.jsonl").read_bytes() == (reference / "samples.jsonl").read_bytes()
    got, want = (json.loads((d / "results.json").read_text()) for d in (out, reference))
    for key in ("run_id", "started_at", "finished_at"):
        got.pop(key), want.pop(key)
    assert got["config"].pop("model") == spec and want["config"].pop("model") == "fake:0"
    assert got == want


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Evaluation]:
    """The reference: the local executor on the example suite."""
    tmp = tmp_path_factory.mktemp("local")
    ev = evaluate(
        "fake:0", [SUITE], limit=LIMIT, db=f"sqlite:///{tmp / 'w.db'}", out_dir=tmp / "out"
    )
    assert ev.computed == REQUESTS
    return tmp / "out", tmp / "w.db", ev


def test_two_ray_workers_give_the_local_results(
    ray_cluster: ModuleType, local_run: tuple[Path, Path, Evaluation], tmp_path: Path
) -> None:
    reference, reference_db, local = local_run
    executor = RayExecutor(workers=2)
    db = tmp_path / "w.db"
    ev = evaluate(
        "fake:0", [SUITE], limit=LIMIT, db=f"sqlite:///{db}", out_dir=tmp_path, executor=executor
    )
    assert_same_run(tmp_path, reference)
    assert (ev.computed, ev.reused) == (REQUESTS, 0)
    store = Store(f"sqlite:///{db}")
    assert store.get_samples(ev.result.run_id) == local.samples  # same records, same order
    assert cache_rows(db) == cache_rows(reference_db)  # every answer streamed into this store
    assert executor.dispatcher_ is not None
    per_worker = executor.dispatcher_.shards_by_pid_
    assert set(per_worker) == {info.pid for info in executor.infos_} and len(per_worker) == 2
    assert min(per_worker.values()) > 0  # both workers computed shards
    assert executor.summary() == f"ray: {sum(per_worker.values())} shards on 2 workers (1 node)"
    assert executor.actors_ == []  # the workers are gone once the run is over
    assert ray_cluster.is_initialized()  # but not the cluster this process connected to


def test_a_killed_worker_has_its_shards_rerun_and_the_results_do_not_change(
    ray_cluster: ModuleType, local_run: tuple[Path, Path, Evaluation], tmp_path: Path
) -> None:
    reference, _, _ = local_run
    executor = RayExecutor(workers=2, shard_size=10)  # 26 shards, on both workers
    db = tmp_path / "w.db"
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["ev"] = evaluate(
                "fake:0:0.04",  # 40 ms per scored window: about 5 s on two workers
                [SUITE],
                limit=LIMIT,
                db=f"sqlite:///{db}",
                out_dir=tmp_path,
                executor=executor,
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while committed(db) == 0:  # the workers are up and the first shards are in
        assert thread.is_alive(), outcome
        assert time.monotonic() < deadline, "no shard committed after 120 s"
        time.sleep(0.01)
    victim = executor.infos_[0].pid
    os.kill(victim, signal.SIGKILL)
    done_at_kill = committed(db)
    thread.join(timeout=180)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert 0 < done_at_kill < REQUESTS  # killed in the middle of the run

    assert_same_run(tmp_path, reference, "fake:0:0.04")
    ev = outcome["ev"]
    assert ev.computed == REQUESTS
    assert committed(db) == REQUESTS
    pids = executor.dispatcher_.shards_by_pid_ if executor.dispatcher_ else {}
    restarted = set(pids) - {info.pid for info in executor.infos_}
    assert victim in pids  # the victim had done some shards before it died
    assert len(restarted) == 1  # Ray restarted it, and the new process ran the rest
    assert "1 worker process restarted" in executor.summary()


def test_cli_connects_to_a_running_cluster_and_reuses_the_local_cache(
    ray_cluster: ModuleType, local_run: tuple[Path, Path, Evaluation], tmp_path: Path
) -> None:
    reference, reference_db, _ = local_run
    with sqlite3.connect(reference_db) as src, sqlite3.connect(tmp_path / "w.db") as dst:
        src.backup(dst)  # the file alone may lack what is still in its write-ahead log
    address = ray_cluster.get_runtime_context().gcs_address
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whetstone.cli.main",
            "evaluate",
            "--model",
            "fake:0",
            "-t",
            str(SUITE),
            "--limit",
            str(LIMIT),
            "--db",
            f"sqlite:///{tmp_path / 'w.db'}",
            "--out",
            str(tmp_path / "out"),
            "--executor",
            "ray",
            "--address",
            address,
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"0 requests computed, {REQUESTS} from cache" in proc.stdout  # one cache, same keys
    assert "ray: 0 shards on 1 worker (1 node)" in proc.stdout
    assert_same_run(tmp_path / "out", reference)


def test_a_model_that_workers_cannot_load_is_one_line(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(ModelError) as err:
        evaluate(
            "fake:x",
            [SUITE],
            limit=2,
            db=f"sqlite:///{tmp_path / 'w.db'}",
            executor=RayExecutor(workers=1),
        )
    assert str(err.value) == "model 'fake:x': expected fake[:SEED[:DELAY_SECONDS]]"
    assert Store(f"sqlite:///{tmp_path / 'w.db'}").list_runs() == []


def test_more_workers_than_the_cluster_holds_is_a_config_error(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as err:
        evaluate(
            "fake",
            [SUITE],
            limit=2,
            db=f"sqlite:///{tmp_path / 'w.db'}",
            executor=RayExecutor(workers=3),
        )
    assert str(err.value) == ("--workers 3 with 1 CPUs each need 3 CPUs; the Ray cluster has 2")


def test_transformers_model_on_ray_gives_the_local_bits(
    ray_cluster: ModuleType, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    """A real transformers model gives the same bits on a worker as in this process.

    Float sums depend on the batch and on the number of CPU threads; default shards are a local
    run's chunks, and a worker of 1 CPU computes with 1 thread, as the local run does here.
    """
    torch = pytest.importorskip("torch")
    tasks = [examples_dir() / "support_mc.yaml", examples_dir() / "support_docs.yaml"]
    options: dict[str, Any] = {"device": "cpu", "dtype": "float32"}
    db = {name: f"sqlite:///{tmp_path / name}.db" for name in ("local", "ray")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = evaluate(str(tiny_lm_dir), tasks, limit=12, db=db["local"], **options)
    finally:
        torch.set_num_threads(threads)
    executor = RayExecutor(workers=1)
    remote = evaluate(str(tiny_lm_dir), tasks, limit=12, db=db["ray"], executor=executor, **options)
    assert remote.result.model == local.result.model
    assert remote.samples == local.samples  # every log-likelihood, prediction and metric
    assert remote.result.tasks == local.result.tasks
    assert executor.dispatcher_ is not None
    assert sum(executor.dispatcher_.shards_by_pid_.values()) == 3  # 1 of choices, 8 + 4 docs


def test_a_worker_that_cannot_restart_has_its_shards_sent_to_the_others(
    ray_cluster: ModuleType,
) -> None:
    executor = RayExecutor(workers=2, max_restarts=0)
    try:
        model = executor.load("fake:0", {})
        victim = executor.infos_[0].pid
        os.kill(victim, signal.SIGKILL)
        docs = [RollingRequest(f"note {i} " * (i % 7 + 1), 16, 8) for i in range(40)]
        assert model.loglikelihood_rolling(docs) == FakeModel(0).loglikelihood_rolling(docs)
        assert executor.dispatcher_ is not None
        assert executor.dispatcher_.alive_ == {1}  # the dead one gets no more shards
        assert set(executor.dispatcher_.shards_by_pid_) == {executor.infos_[1].pid}
        assert sum(executor.dispatcher_.shards_by_pid_.values()) == 5  # 40 documents, 8 a shard
    finally:
        executor.close()
