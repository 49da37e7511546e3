"""`whetstone distill` and `whetstone quantize` on the command line: tables that match the
written results, one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from tests.optimize.test_distill_support import (
    one_thread,  # noqa: F401
    tiny_bert,
    write_config,
    write_topic_task,
)
from whetstone.cli.main import app

RUNNER = CliRunner()
WIDE = {"COLUMNS": "250", "NO_COLOR": "1"}


def _rows(text: str, title: str) -> list[list[str]]:
    """Body rows of the rich table printed under `title`."""
    lines = text.split(title, 1)[1].splitlines()
    body = [i for i, line in enumerate(lines) if line.strip().startswith("│")]
    rows = []
    for i in range(body[0], len(lines)):
        if not lines[i].strip().startswith("│"):
            break
        rows.append([c.strip() for c in lines[i].strip().strip("│").split("│")])
    return rows


def test_distill_command_prints_what_it_wrote(tmp_path: Path) -> None:
    task = write_topic_task(tmp_path, "topics", 64, seed=5)
    teacher = tiny_bert(tmp_path / "teacher", layers=2)
    path = write_config(
        tmp_path,
        f"teacher: {teacher}\nstudent: {{layers: 1}}\n"
        f"data: {{task: {task}, max_length: 24}}\n"
        "training: {max_steps: 2, batch_size: 16}\n"
        f"eval: {{tasks: [{task}]}}\n"
        "speed: {seq_len: 8, latency_runs: 2, throughput_batch: 2, throughput_runs: 1}\n"
        f"output_dir: {tmp_path / 'out'}\ncache_dir: {tmp_path / 'cache'}\n"
        f"db: sqlite:///{tmp_path / 'ws.db'}\n",
    )
    result = RUNNER.invoke(app, ["distill", str(path)], env=WIDE)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    written = json.loads((tmp_path / "out" / "distill.json").read_text())
    quality = {(r[0], r[1]): r for r in _rows(result.stdout, "quality")}
    accuracy = next(r for r in written["rows"] if r["metric"] == "accuracy")
    printed = quality[("topics", "accuracy")]
    assert float(printed[2]) == pytest.approx(accuracy["reference"], abs=5e-4)
    assert float(printed[4]) == pytest.approx(accuracy["retention"], rel=1e-3)
    models = _rows(result.stdout, "models")
    assert models[0][0].startswith("teacher") and models[1][0].startswith("student")
    assert int(models[1][1].replace(",", "")) == written["student"]["parameters"]
    assert f"student saved to {written['student_dir']}" in result.stdout.replace("\n", "")


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, "teacher: t\nstudent: {layer: 2}\ndata: {task: x.yaml}\n")
    result = RUNNER.invoke(app, ["distill", str(path)], env=WIDE)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "distill.yaml:2: unknown key 'student.layer'" in lines[0]


def test_vocabulary_mismatch_is_one_line_and_exit_2(tiny_lm_dir: Path, tmp_path: Path) -> None:
    task = write_topic_task(tmp_path, "topics", 8, seed=5)
    other = tiny_bert(tmp_path / "bert")  # a classifier: another vocabulary and another task
    path = write_config(
        tmp_path,
        f"teacher: {tiny_lm_dir}\nstudent: {{model: {other}}}\ntask: causal_lm\n"
        f"data: {{task: {task}}}\n",
    )
    result = RUNNER.invoke(app, ["distill", str(path)], env=WIDE)
    assert result.exit_code == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "different vocabularies" in lines[0] and str(other) in lines[0]


def test_quantize_command(tmp_path: Path) -> None:
    model = tiny_bert(tmp_path / "bert", layers=2)
    (tmp_path / "q.yaml").write_text(
        f"model: {model}\nspeed: {{seq_len: 8, latency_runs: 2, throughput_batch: 2, "
        f"throughput_runs: 1}}\noutput_dir: {tmp_path / 'q'}\ndb: sqlite:///{tmp_path / 'ws.db'}\n"
    )
    result = RUNNER.invoke(app, ["quantize", str(tmp_path / "q.yaml")], env=WIDE)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    written = json.loads((tmp_path / "q" / "quantize.json").read_text())
    models = _rows(result.stdout, "models")
    assert float(models[1][2]) == pytest.approx(written["quantized"]["size_mb"], rel=1e-3)
