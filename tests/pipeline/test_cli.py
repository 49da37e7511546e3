"""`whetstone run` and `--gate` exit codes, and resuming a pipeline killed half way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tests.pipeline.helpers import oracle_mc_task, write_pipeline
from whetstone.cli.main import app
from whetstone.pipeline import STAGE_KIND, load_result
from whetstone.store import Store

RUNNER = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def gate_pipeline(tmp_path: Path, oracle: str) -> Path:
    """Baseline fake:0 and candidate fake:1 on a task that `oracle` answers perfectly."""
    task = oracle_mc_task(tmp_path, oracle)
    return write_pipeline(
        tmp_path,
        tasks=[task.name],
        limit=None,
        candidates=[{"name": "new", "model": "fake:1"}],
        gate={"metrics": ["oracle_mc/acc"], "candidates": "all"},
        db=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )


def test_gate_fails_when_the_candidate_is_significantly_worse(tmp_path: Path) -> None:
    path = gate_pipeline(tmp_path, oracle="fake:0")  # the baseline is the oracle
    result = RUNNER.invoke(app, ["run", str(path), "--gate"], env=ENV)
    assert result.exit_code == 1, result.output
    assert "gate failed: new oracle_mc/acc: significantly worse" in result.output
    # without --gate the same pipeline succeeds and still reports the verdict
    again = RUNNER.invoke(app, ["run", str(path)], env=ENV)
    assert again.exit_code == 0, again.output
    assert "gate failed" in again.output and "reused" in again.output


def test_gate_passes_when_the_candidate_is_better(tmp_path: Path) -> None:
    path = gate_pipeline(tmp_path, oracle="fake:1")  # the candidate is the oracle
    result = RUNNER.invoke(app, ["run", str(path), "--gate"], env=ENV)
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output
    stored = load_result(Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), "loop")
    assert stored is not None and stored.gate is not None and stored.gate.passed
    check = stored.gate.checks[0]
    assert check.value == 1.0 and check.diff is not None and check.diff > 0


def test_bad_pipeline_and_gate_without_section_exit_2(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, colour="blue")
    result = RUNNER.invoke(app, ["run", str(path)], env=ENV)
    assert result.exit_code == 2
    assert "unknown key 'colour'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    path = write_pipeline(tmp_path)
    result = RUNNER.invoke(app, ["run", str(path), "--gate"], env=ENV)
    assert result.exit_code == 2 and "needs a 'gate:' section" in result.stderr


def test_a_killed_pipeline_resumes_without_redoing_finished_stages(tmp_path: Path) -> None:
    task = oracle_mc_task(tmp_path, "fake:0", n=30)
    db = tmp_path / "db.sqlite"
    path = write_pipeline(
        tmp_path,
        tasks=[task.name],
        limit=None,
        candidates=[{"name": "slow", "model": "fake:1"}],
        db=f"sqlite:///{db}",
    )
    cmd = [sys.executable, "-m", "whetstone.cli.main", "run", str(path)]
    # the candidate's model blocks after 10 windows: the kill comes while it runs, for certain
    env = {**os.environ, **ENV, "WHETSTONE_FAKE_STALL": "1:10"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    store = Store(f"sqlite:///{db}")
    deadline = time.time() + 60
    while not any(r.status == "running" and r.model.name == "fake-1" for r in store.list_runs()):
        assert time.time() < deadline and proc.poll() is None, "the candidate never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stages = [a.key.split("/")[1] for a in store.list_artifacts(STAGE_KIND)]
    assert stages == ["evaluate"]  # only the baseline's stage finished
    baseline_runs = [r.run_id for r in store.list_runs() if r.model.name == "fake-0"]
    result = RUNNER.invoke(app, ["run", str(path)], env=ENV)
    assert result.exit_code == 0, result.output
    stored = load_result(store, "loop")
    assert stored is not None and stored.reused == ["evaluate/baseline"]
    assert stored.baseline.run_id == baseline_runs[0]
    # the half-done candidate run was resumed, not started afresh
    slow_runs = [r for r in store.list_runs() if r.model.name == "fake-1"]
    assert len(slow_runs) == 1 and slow_runs[0].status == "finished"
    assert stored.comparisons["slow"].metrics[0].n == 30


def test_report_of_a_pipeline_file_uses_its_store(tmp_path: Path) -> None:
    path = gate_pipeline(tmp_path, oracle="fake:1")
    assert RUNNER.invoke(app, ["run", str(path)], env=ENV).exit_code == 0
    out = tmp_path / "r.html"
    result = RUNNER.invoke(app, ["report", str(path), "--out", str(out)], env=ENV)
    assert result.exit_code == 0, result.output
    assert "pipeline loop" in out.read_text(encoding="utf-8")
    assert "Selected:" not in out.with_suffix(".md").read_text(encoding="utf-8")  # no rule
