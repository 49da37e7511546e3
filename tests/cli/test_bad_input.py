"""Bad input to `whetstone evaluate`: exit code 2, one line on stderr that names the file, line
or field and what was expected, no run left in the database and no results.json written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.errors import DataError
from whetstone.evaluate.engine import evaluate
from whetstone.models.fake import FakeModel
from whetstone.store import Store

EXAMPLES = examples_dir()
MC = EXAMPLES / "support_mc.yaml"
ENV = {"COLUMNS": "250", "NO_COLOR": "1"}

MC_TASK = """name: quiz
kind: multiple_choice
data:
  path: quiz.jsonl
  id: id
prompt: "Question: {question}\\nAnswer:"
choices: choices
answer: answer
"""
QUIZ = [
    {"id": "q1", "question": "2 + 2?", "choices": ["3", "4"], "answer": 1},
    {"id": "q2", "question": "Capital of France?", "choices": ["Paris", "Rome"], "answer": 0},
]


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def write_quiz(folder: Path, rows: list[dict[str, object]] = QUIZ, task: str = MC_TASK) -> Path:
    write(folder, "quiz.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return write(folder, "quiz.yaml", task)


@dataclass
class Case:
    """Builds its files in a folder and returns the CLI arguments (without --db and --out)."""

    build: Callable[[Path, Path], list[str]]
    expected: tuple[str, ...]  # pieces the error line must contain


def _malformed_yaml(tmp: Path, _: Path) -> list[str]:
    # an unclosed flow list on line 7: the parser notices at the ':' of line 8
    task = write(tmp, "quiz.yaml", MC_TASK.replace("choices: choices", "choices: [choices"))
    return ["--model", "fake", "-t", str(task)]


def _unknown_key(tmp: Path, _: Path) -> list[str]:
    return ["--model", "fake", "-t", str(write_quiz(tmp, task=MC_TASK + "shuffle: true\n"))]


def _missing_column(tmp: Path, _: Path) -> list[str]:
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in QUIZ]
    return ["--model", "fake", "-t", str(write_quiz(tmp, rows))]


def _template_field(tmp: Path, _: Path) -> list[str]:
    task = MC_TASK.replace("{question}", "{question} ({topic})")
    return ["--model", "fake", "-t", str(write_quiz(tmp, task=task))]


def _empty_data(tmp: Path, _: Path) -> list[str]:
    task = write_quiz(tmp)
    write(tmp, "quiz.jsonl", "")
    return ["--model", "fake", "-t", str(task)]


def _unknown_kind(tmp: Path, _: Path) -> list[str]:
    task = MC_TASK.replace("kind: multiple_choice", "kind: ranking")
    return ["--model", "fake", "-t", str(write_quiz(tmp, task=task))]


def _empty_choice(tmp: Path, _: Path) -> list[str]:
    rows = [QUIZ[0], {**QUIZ[1], "choices": ["Paris", ""]}]
    return ["--model", "fake", "-t", str(write_quiz(tmp, rows))]


def _same_verbalized_labels(tmp: Path, _: Path) -> list[str]:
    write(tmp, "mail.jsonl", '{"text": "refund please", "label": "billing"}\n')
    task = write(
        tmp,
        "mail.yaml",
        "name: mail\nkind: classification\ndata: {path: mail.jsonl}\nlabel: label\n"
        "labels:\n  billing: money\n  refund: money\n",
    )
    return ["--model", "fake", "-t", str(task)]


def _nonexistent_model_dir(tmp: Path, _: Path) -> list[str]:
    return ["--model", "/nonexistent/dir", "-t", str(MC)]


def _missing_gguf(tmp: Path, _: Path) -> list[str]:
    return ["--model", str(tmp / "nope.gguf"), "-t", str(MC)]


def _server_that_does_not_answer(tmp: Path, _: Path) -> list[str]:
    try:
        import whetstone.models.openai_http  # noqa: F401
    except ImportError:
        pytest.skip("whetstone.models.openai_http does not exist yet")
    return ["--model", "openai:x", "--base-url", "http://127.0.0.1:9", "-t", str(MC)]


def _limit_zero(tmp: Path, _: Path) -> list[str]:
    return ["--model", "fake", "-t", str(MC), "--limit", "0"]


CASES = {
    "malformed_yaml": Case(_malformed_yaml, ("quiz.yaml:8", "invalid YAML", "expected ',' or ']'")),
    "unknown_key": Case(_unknown_key, ("quiz.yaml:9", "unknown key 'shuffle'", "expected one of")),
    "missing_column": Case(_missing_column, ("quiz.jsonl", "column 'answer'", "missing")),
    "template_field": Case(
        _template_field, ("quiz.jsonl", "prompt field '{topic}'", "not in the data")
    ),
    "empty_data": Case(_empty_data, ("quiz.jsonl", "empty")),
    "unknown_kind": Case(
        _unknown_kind, ("quiz.yaml:2", "field 'kind'", "multiple_choice", "'ranking'")
    ),
    "empty_choice": Case(_empty_choice, ("quiz.jsonl", "item q2", "choice 1", "empty")),
    "same_labels": Case(_same_verbalized_labels, ("mail.yaml:6", "field 'labels'", "distinct")),
    "model_dir": Case(_nonexistent_model_dir, ("'/nonexistent/dir'", "does not exist")),
    "gguf": Case(_missing_gguf, ("nope.gguf", "does not exist")),
    "server": Case(
        _server_that_does_not_answer, ("http://127.0.0.1:9", "expected an OpenAI-compatible server")
    ),
    "limit_zero": Case(_limit_zero, ("--limit 0", "at least 1")),
}


def check_refused(code: int, stderr: str, expected: tuple[str, ...], db: str, out: Path) -> str:
    """Exit 2, a single stderr line with the expected pieces, no run, no results.json."""
    assert code == 2, stderr
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: ")
    for piece in expected:
        assert piece in line, (piece, line)
    assert Store(db).list_runs() == []
    assert not (out / "results.json").exists()
    return line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    db, out = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "out"
    args = case.build(tmp_path, out)
    result = CliRunner().invoke(app, ["evaluate", *args, "--db", db, "--out", str(out)], env=ENV)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    check_refused(result.exit_code, result.stderr, case.expected, db, out)


def test_bogus_dtype_of_a_transformers_model(tiny_lm_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    grad = torch.is_grad_enabled()
    db, out = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tiny_lm_dir),
            "--dtype",
            "bogus",
            "-t",
            str(MC),
            "--db",
            db,
            "--out",
            str(out),
        ],
        env=ENV,
    )
    torch.set_grad_enabled(grad)
    check_refused(result.exit_code, result.stderr, ("--dtype bogus", "float32"), db, out)


def test_not_a_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gguf")
    monkeypatch.setenv("WHETSTONE_CACHE", str(tmp_path / "cache"))
    junk = write(tmp_path, "junk.gguf", "this is not a model\n" * 50)
    db, out = f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(junk), "-t", str(MC), "--db", db, "--out", str(out)],
        env=ENV,
    )
    check_refused(result.exit_code, result.stderr, ("junk.gguf", "GGUF"), db, out)


# --------------------------------------------------------------------------- failing mid-run


MIDWAY_TASK = """name: sources
kind: generation
data: {path: sources.jsonl, id: id}
prompt: "{question} (source: {meta[source]})"
target: answer
max_new_tokens: 4
"""


def _midway_suite(tmp: Path) -> Path:
    """A suite whose first task runs fine and whose second fails on its third item's data."""
    write_quiz(tmp)
    rows = [
        {"id": "s1", "question": "Q1", "answer": "A", "meta": {"source": "faq"}},
        {"id": "s2", "question": "Q2", "answer": "B", "meta": {"source": "docs"}},
        {"id": "s3", "question": "Q3", "answer": "C", "meta": {"author": "kim"}},
    ]
    write(tmp, "sources.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write(tmp, "sources.yaml", MIDWAY_TASK)
    return write(tmp, "suite.yaml", "name: s\ntasks: [quiz.yaml, sources.yaml]\n")


def _sample_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])


def test_a_run_that_fails_midway_for_a_data_reason_leaves_no_run(tmp_path: Path) -> None:
    suite = _midway_suite(tmp_path)
    db, out = f"sqlite:///{tmp_path / 'api.db'}", tmp_path / "api-out"
    with pytest.raises(DataError, match="item s3"):
        evaluate(FakeModel(0), [suite], db=db, out_dir=out)
    assert Store(db).list_runs() == []
    assert _sample_rows(tmp_path / "api.db") == 0  # the first task's samples went too
    assert not out.exists()

    db, out = f"sqlite:///{tmp_path / 'cli.db'}", tmp_path / "cli-out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "whetstone.cli.main",
            "evaluate",
            "--model",
            "fake",
            "-t",
            str(suite),
            "--db",
            db,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # the progress bars of the tasks that ran come first; the error is the last, single line
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and proc.stderr.rstrip("\n").endswith(errors[0])
    assert "'sources'" in errors[0] and "item s3" in errors[0] and "'source'" in errors[0]
    assert Store(db).list_runs() == []
    assert _sample_rows(tmp_path / "cli.db") == 0
    assert not (out / "results.json").exists()
