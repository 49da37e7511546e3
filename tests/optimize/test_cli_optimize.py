"""`whetstone finetune` and `whetstone tune` from the command line: output, and one-line errors
with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.optimize.test_tune import SPACE
from whetstone.cli.main import app

REPO = Path(__file__).resolve().parents[2]


def test_tune_prints_trials_best_and_storage(tmp_path, yesno_dir, fake_trainer):
    config = {
        "study": "cli",
        "trainer": {"kind": "fake", "config": {"steps": 2}},
        "search_space": SPACE,
        "objectives": [{"task": "yesno", "metric": "accuracy"}],
        "validation": {"tasks": [str(yesno_dir / "yesno.yaml")]},
        "n_trials": 3,
        "output_dir": str(tmp_path / "study"),
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    db = f"sqlite:///{tmp_path}/db.sqlite"
    result = CliRunner().invoke(app, ["tune", str(path), "--db", db, "--n-trials", "4"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "study cli: 0 of 4 trials done" in out
    assert out.count("COMPLETE") == 4 and "best trial" in out
    assert "(best trial) minus" in out and "mcnema" in out  # the table is cut at 80 columns
    assert "optuna-dashboard reads it" in out and "db.sqli" in out


def test_bad_config_is_one_line_and_exit_code_2(tmp_path):
    path = tmp_path / "finetune.yaml"
    path.write_text("model: minilm\ndata: {task: t.yaml}\nlearning_rate: 0.1\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "whetstone.cli.main", "finetune", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"{path}:3: unknown key 'learning_rate'" in lines[0]
    missing = subprocess.run(
        [sys.executable, "-m", "whetstone.cli.main", "tune", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert missing.returncode == 2 and "nope.yaml: config file not found" in missing.stderr
