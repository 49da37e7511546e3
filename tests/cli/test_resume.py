"""A run killed part way (SIGKILL, or Ctrl-C as SIGINT) resumes with `--resume` and computes
only what the cache lacks; its results equal those of a run that was never interrupted.

The model is `fake:0`; the cache commits every 8 of the 42 help-center articles of the example
perplexity task, and the interrupted run's model blocks for good after 20 windows
(``WHETSTONE_FAKE_STALL``), so the signal always arrives after the first commits and
before the end, however fast or slow the machine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.store import Store

TASK = examples_dir() / "support_docs.yaml"
N_REQUESTS = 42  # one rolling request per article
MODEL = "fake:0"
STALL = {"WHETSTONE_FAKE_STALL": "0:20"}
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}
SUMMARY = re.compile(r"run (\w+) · (\d+) requests computed, (\d+) from cache")


def command(db: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "whetstone.cli.main",
        "evaluate",
        "--model",
        MODEL,
        "-t",
        str(TASK),
        "--db",
        f"sqlite:///{db}",
        "--out",
        str(out),
        *extra,
    ]


def cache_rows(db: Path) -> int:
    """Committed cache rows, read with the sqlite3 module (0 before the schema exists)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM cache").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet, or locked for a moment
        return 0


def interrupt(db: Path, out: Path, sig: signal.Signals) -> int:
    """Start an evaluation, send `sig` once some cache rows are committed; the rows at the end."""
    proc = subprocess.Popen(
        command(db, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **ENV, **STALL},
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while cache_rows(db) == 0:
            assert proc.poll() is None, f"finished before it could be stopped: {proc.communicate()}"
            assert time.monotonic() < deadline, "no cache rows after 90 s"
            time.sleep(0.01)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, stderr
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert "Traceback" not in stderr  # Ctrl-C ends the command quietly
    assert not (out / "results.json").exists()
    return cache_rows(db)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("straight")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            MODEL,
            "-t",
            str(TASK),
            "--db",
            f"sqlite:///{tmp / 'w.db'}",
            "--out",
            str(tmp / "out"),
        ],
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    match = SUMMARY.search(result.stdout)
    assert match and (int(match.group(2)), int(match.group(3))) == (N_REQUESTS, 0)
    return dict(json.loads((tmp / "out" / "results.json").read_text()))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_resume_after_interruption_computes_only_the_missing_requests(
    sig: signal.Signals, tmp_path: Path, uninterrupted: dict[str, Any]
) -> None:
    db, out = tmp_path / "runs.db", tmp_path / "out"
    committed = interrupt(db, out, sig)
    assert 0 < committed < N_REQUESTS
    (stopped,) = Store(f"sqlite:///{db}").list_runs()
    assert stopped.status == "running" and stopped.result is None

    proc = subprocess.run(
        command(db, out, "--resume"),
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    match = SUMMARY.search(proc.stdout)
    assert match is not None, proc.stdout
    run_id, computed, reused = match.group(1), int(match.group(2)), int(match.group(3))
    assert run_id == stopped.run_id  # the unfinished run goes on under its own id
    assert reused == committed > 0
    assert computed + reused == N_REQUESTS

    (finished,) = Store(f"sqlite:///{db}").list_runs()
    assert (finished.run_id, finished.status) == (stopped.run_id, "finished")
    results = json.loads((out / "results.json").read_text())
    assert results["run_id"] == stopped.run_id
    # exactly the numbers of a run that was never stopped: values and intervals
    assert results["tasks"] == uninterrupted["tasks"]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == N_REQUESTS


def test_resume_without_an_unfinished_run_starts_a_new_one(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    args = ["evaluate", "--model", "fake:0", "-t", str(TASK), "--db", db, "--limit", "3"]
    first = CliRunner().invoke(app, args, env=ENV)
    again = CliRunner().invoke(app, [*args, "--resume"], env=ENV)
    assert first.exit_code == again.exit_code == 0
    ids = [SUMMARY.search(r.stdout).group(1) for r in (first, again)]  # type: ignore[union-attr]
    assert ids[0] != ids[1]  # a finished run is never reopened
    assert "0 requests computed, 3 from cache" in again.stdout
    assert sorted(r.status for r in Store(db).list_runs()) == ["finished", "finished"]
