"""The command line starts without the engine: `--help` of the app and of every command
imports none of the heavy libraries (they load when a command runs)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "sklearn",
    "sqlalchemy",
    "alembic",
    "nltk",
    "rouge_score",
    "fastapi",
    "uvicorn",
    "datasets",
    "pandas",
    "optuna",
    "ray",
    "httpx",
    "pydantic",
}

PROBE = """
import json, sys
from typer.main import get_command
from whetstone.cli.main import app
command = get_command(app)  # builds every command's parameters, as --help does
names = sorted(command.commands)
print(json.dumps({"names": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_the_cli_imports_no_heavy_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    probe = json.loads(out.stdout)
    assert {"evaluate", "compare", "audit", "feedback", "run"} <= set(probe["names"])
    assert not HEAVY & set(probe["loaded"]), sorted(HEAVY & set(probe["loaded"]))


def test_help_of_the_app_and_a_command_answers() -> None:
    for args in ([], ["evaluate"], ["feedback"], ["audit"]):
        out = subprocess.run(
            [sys.executable, "-m", "whetstone.cli.main", *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "Usage" in out.stdout
