"""The loop on a real PostgreSQL store: `whetstone run --gate`, stage reuse, the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.pipeline.helpers import oracle_mc_task, write_pipeline
from tests.store.test_postgres import store_url  # noqa: F401 (a fixture: a fresh schema)
from whetstone.cli.main import app
from whetstone.pipeline import STAGE_KIND, load_result
from whetstone.store import Store

pytestmark = pytest.mark.postgres
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def test_pipeline_gate_and_report_on_postgres(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    task = oracle_mc_task(tmp_path, "fake:0")
    path = write_pipeline(
        tmp_path,
        tasks=[task.name],
        limit=None,
        candidates=[{"name": "new", "model": "fake:1"}],
        gate={"metrics": ["oracle_mc/acc"], "candidates": "all", "margin": 0.1},
        db=store_url,
    )
    runner = CliRunner()
    first = runner.invoke(app, ["run", str(path), "--gate"], env=ENV)
    assert first.exit_code == 1 and "gate failed" in first.output
    again = runner.invoke(app, ["run", str(path), "--report", str(tmp_path / "r.html")], env=ENV)
    assert again.exit_code == 0, again.output
    store = Store(store_url)
    result = load_result(store, "loop")
    assert result is not None and sorted(result.reused) == ["evaluate/baseline", "evaluate/new"]
    assert len(store.list_artifacts(STAGE_KIND)) == 2
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<section id="gate">' in page and "beyond the margin 0.1" in page
    assert '<span class="badge fail">fail</span>' in page
