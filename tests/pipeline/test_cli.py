"""`whetstone run` and `--gate` exit codes, and resuming a pipeline killed half way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from junitparser import Error, Failure, JUnitXml
from typer.testing import CliRunner

from tests.pipeline.helpers import oracle_mc_task, write_pipeline
from whetstone.cli.main import app
from whetstone.pipeline import STAGE_KIND, load_result
from whetstone.store import Store

RUNNER = CliRunner()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def gate_pipeline(tmp_path: Path, oracle: str, candidate: str = "fake:1") -> Path:
    """Baseline fake:0 and a candidate on a task that `oracle` answers perfectly; the gate
    allows 10 points of accuracy."""
    task = oracle_mc_task(tmp_path, oracle)
    return write_pipeline(
        tmp_path,
        tasks=[task.name],
        limit=None,
        candidates=[{"name": "new", "model": candidate}],
        gate={"metrics": ["oracle_mc/acc"], "candidates": "all", "margin": 0.1},
        db=f"sqlite:///{tmp_path / 'db.sqlite'}",
    )


def test_gate_fails_when_the_candidate_is_surely_worse_than_the_margin(tmp_path: Path) -> None:
    path = gate_pipeline(tmp_path, oracle="fake:0")  # the baseline is the oracle
    junit, summary = tmp_path / "gate.xml", tmp_path / "gate.md"
    args = ["run", str(path), "--gate", "--junit", str(junit), "--summary", str(summary)]
    result = RUNNER.invoke(app, args, env=ENV)
    assert result.exit_code == 1, result.output
    assert "gate failed: new oracle_mc/acc:" in result.output
    assert "beyond the margin 0.1" in result.output
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    case = next(iter(suite))
    assert (suite.tests, suite.failures, suite.errors) == (1, 1, 0)
    assert (case.classname, case.name) == ("new", "oracle_mc/acc")
    assert isinstance(case.result[0], Failure) and "beyond the margin" in case.result[0].message
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("### Regression gate: fail") and "| new | oracle_mc/acc |" in text
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
    assert check.verdict == "pass" and check.margin == "0.1"


def test_gate_is_inconclusive_when_40_items_cannot_tell(tmp_path: Path) -> None:
    """Two models that agree with the oracle by chance (about 1 in 4): on 40 items the
    interval of their difference is about +-0.2, wider than the 0.1 margin either way."""
    path = gate_pipeline(tmp_path, oracle="fake:5", candidate="fake:2")
    junit = tmp_path / "gate.xml"
    result = RUNNER.invoke(app, ["run", str(path), "--gate", "--junit", str(junit)], env=ENV)
    assert result.exit_code == 3, result.output
    assert "gate inconclusive: new oracle_mc/acc:" in result.output
    assert "the data cannot tell" in result.output and "whetstone plan" in result.output
    suite = next(iter(JUnitXml.fromfile(str(junit))))
    assert (suite.failures, suite.errors) == (0, 1)
    assert isinstance(next(iter(suite)).result[0], Error)


def test_bad_pipeline_and_gate_without_section_exit_2(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path, colour="blue")
    result = RUNNER.invoke(app, ["run", str(path)], env=ENV)
    assert result.exit_code == 2
    assert "unknown key 'colour'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    path = write_pipeline(tmp_path)
    result = RUNNER.invoke(app, ["run", str(path), "--gate"], env=ENV)
    assert result.exit_code == 2 and "need a 'gate:' section" in result.stderr


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
