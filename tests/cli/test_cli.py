"""The `whetstone` command line, in process (typer's CliRunner) and as a real subprocess.

What the commands print is parsed back and compared with the files they wrote and with the
database, so a table that drifts from results.json fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.store import Store

EXAMPLES = examples_dir()
TASKS = ["support_docs", "support_mc", "support_intents", "support_qa"]
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}
RUNNER = CliRunner()


def invoke(*args: str | Path) -> Any:
    result = RUNNER.invoke(app, [str(a) for a in args], env=WIDE)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def table_rows(text: str) -> list[list[str]]:
    """Body rows of a rich table: cells of each line drawn with │, header and rules dropped."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


Row = tuple[float, float | None, float | None, int]


def result_rows(text: str) -> dict[tuple[str, str], Row]:
    """(task, metric) -> (value, ci_low, ci_high, n) from a printed results table; the ends are
    None where the table says "too few"."""
    rows: dict[tuple[str, str], Row] = {}
    task = ""
    for cells in table_rows(text):
        name, metric, value, ci, n = cells
        task = name or task
        if ci == "too few":
            rows[(task, metric)] = (float(value), None, None, int(n))
            continue
        low, high = (float(x) for x in ci.strip("[]").split(","))
        rows[(task, metric)] = (float(value), low, high, int(n))
    return rows


def assert_printed_equals_results(printed: str, results: dict[Any, Any]) -> None:
    """Every metric of results.json is printed once, to the four significant digits shown."""
    rows = result_rows(printed)
    expected = {
        (task, metric): m
        for task, body in results["tasks"].items()
        for metric, m in body["metrics"].items()
    }
    assert set(rows) == set(expected)
    for key, (value, low, high, n) in rows.items():
        m = expected[key]
        for shown, exact in ((value, m["value"]), (low, m["ci_low"]), (high, m["ci_high"])):
            if exact is None:
                assert shown is None and m["too_few"], key
                continue
            assert shown == pytest.approx(exact, rel=6e-4, abs=1e-12), key
        assert n == m["n"], key


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, Any]:
    tmp = tmp_path_factory.mktemp("cli")
    db = f"sqlite:///{tmp / 'runs.db'}"
    out: dict[Any, Any] = {"db": db, "tmp": tmp}
    for seed in (0, 1):
        folder = tmp / f"fake{seed}"
        result = invoke(
            "evaluate",
            "--model",
            f"fake:{seed}",
            "-t",
            EXAMPLES / "suite.yaml",
            "--out",
            folder,
            "--db",
            db,
        )
        out[seed] = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "results": json.loads((folder / "results.json").read_text()),
            "samples": [json.loads(x) for x in (folder / "samples.jsonl").read_text().splitlines()],
        }
    return out


def test_evaluate_prints_every_task_and_metric_and_writes_the_files(
    two_runs: dict[Any, Any],
) -> None:
    run = two_runs[0]
    results = run["results"]
    assert list(results["tasks"]) == TASKS
    assert_printed_equals_results(run["stdout"], results)
    summary = re.search(r"run (\w+) · (\d+) requests computed, (\d+) from cache", run["stdout"])
    assert summary is not None
    assert summary.group(1) == results["run_id"]
    assert (int(summary.group(2)), int(summary.group(3))) == (932, 0)
    assert len(run["samples"]) == 42 + 60 + 120 + 50
    # progress goes to stderr, one finished bar per task
    for task in TASKS:
        assert re.search(rf"{task}\s.*\b(\d+)/\1\b", run["stderr"]), task


def test_runs_lists_both_runs_finished(two_runs: dict[Any, Any]) -> None:
    result = invoke("runs", "--db", two_runs["db"])
    rows = {cells[0]: cells for cells in table_rows(result.stdout)}
    for seed in (0, 1):
        run_id = two_runs[seed]["results"]["run_id"]
        assert rows[run_id][1] == "finished"
        assert rows[run_id][2] == f"fake-{seed}"
        assert rows[run_id][4] == ", ".join(TASKS)
    assert len(rows) == 2


def test_show_prints_the_stored_results(two_runs: dict[Any, Any]) -> None:
    run_id = two_runs[1]["results"]["run_id"]
    result = invoke("show", run_id[:6], "--db", two_runs["db"])
    assert f"run {run_id}" in result.stdout
    assert_printed_equals_results(result.stdout, two_runs[1]["results"])


def test_show_of_an_unknown_run_is_a_one_line_error(two_runs: dict[Any, Any]) -> None:
    result = RUNNER.invoke(app, ["show", "zzzz", "--db", two_runs["db"]], env=WIDE)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "zzzz" in result.stderr


def test_compare_prints_paired_rows_with_p_values(two_runs: dict[Any, Any]) -> None:
    a_id, b_id = (two_runs[s]["results"]["run_id"] for s in (0, 1))
    result = invoke("compare", a_id[:8], b_id[:8], "--db", two_runs["db"])
    assert f"{b_id} minus {a_id}" in result.stdout
    rows = {(c[0], c[1]): c for c in table_rows(result.stdout)}
    assert {task for task, _ in rows} == set(TASKS)
    for cells in rows.values():
        assert 0.0 < float(cells[6]) <= 1.0
        assert cells[7] == "" or float(cells[7]) > 0  # the detectable difference
        assert cells[8] in (
            "mcnemar_exact",
            "sign_flip",
            "ratio_swap_permutation",
            "corpus_swap_permutation",
        )
    # accuracy on the multiple-choice task: values from results.json, p from scipy
    acc = rows[("support_mc", "acc")]
    res_a, res_b = (two_runs[s]["results"]["tasks"]["support_mc"]["metrics"]["acc"] for s in (0, 1))
    assert float(acc[2]) == pytest.approx(res_a["value"], rel=6e-4)
    assert float(acc[3]) == pytest.approx(res_b["value"], rel=6e-4)
    assert float(acc[4]) == pytest.approx(res_b["value"] - res_a["value"], rel=6e-4, abs=1e-12)
    x, y = (
        np.array([s["metrics"]["acc"] for s in two_runs[k]["samples"] if s["task"] == "support_mc"])
        for k in (0, 1)
    )
    only_a, only_b = int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))
    p = 1.0 if only_a + only_b == 0 else stats.binomtest(only_a, only_a + only_b).pvalue
    assert float(acc[6]) == pytest.approx(p, rel=2e-3)
    assert acc[8] == "mcnemar_exact" and acc[9] == "60"
    # perplexity: the corpus values of both runs
    ppl = rows[("support_docs", "perplexity")]
    for col, seed in ((2, 0), (3, 1)):
        value = two_runs[seed]["results"]["tasks"]["support_docs"]["metrics"]["perplexity"]["value"]
        assert float(ppl[col]) == pytest.approx(value, rel=6e-4)


def test_stored_results_equal_results_json(two_runs: dict[Any, Any]) -> None:
    store = Store(two_runs["db"])
    for seed in (0, 1):
        results = two_runs[seed]["results"]
        row = store.get_run(results["run_id"])
        assert row is not None and row.result is not None
        assert row.result.model_dump(mode="json")["tasks"] == results["tasks"]
    store.close()


def test_evaluate_in_a_real_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'sub.db'}"
    env = {**os.environ, **WIDE}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whetstone.cli.main",
            "evaluate",
            "--model",
            "fake:2",
            "-t",
            str(EXAMPLES / "support_mc.yaml"),
            "-t",
            str(EXAMPLES / "support_intents.yaml"),
            "--limit",
            "12",
            "--out",
            str(out),
            "--db",
            db,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert list(results["tasks"]) == ["support_mc", "support_intents"]
    assert {m["n"] for t in results["tasks"].values() for m in t["metrics"].values()} == {12}
    assert_printed_equals_results(proc.stdout, results)
    assert f"{12 * 4 + 12 * 5} requests computed, 0 from cache" in proc.stdout
    runs = Store(db).list_runs()
    assert [(r.run_id, r.status) for r in runs] == [(results["run_id"], "finished")]


def test_plan_reads_one_or_two_pilot_runs(two_runs: dict[Any, Any]) -> None:
    a_id, b_id = (two_runs[s]["results"]["run_id"] for s in (0, 1))
    one = invoke("plan", a_id[:8], "--db", two_runs["db"], "--drop", "0.1", "--json")
    rows = {(r["task"], r["metric"]): r for r in json.loads(one.stdout)}
    acc = rows[("support_mc", "acc")]
    assert acc["source"].startswith("one run") and acc["needed"] > acc["n"] / 10
    two = invoke("plan", a_id, b_id, "--db", two_runs["db"], "--metric", "support_mc/acc")
    (cells,) = table_rows(two.stdout)
    assert cells[:2] == ["support_mc", "acc"] and cells[-1] == "two runs: paired"
    bad = RUNNER.invoke(app, ["plan", a_id, "--db", two_runs["db"], "--drop", "lots"], env=WIDE)
    assert bad.exit_code == 2 and "--drop 'lots'" in bad.stderr
