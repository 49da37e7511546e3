"""The model backend registry: how a spec picks its backend, unknown schemes, and a backend
added by an outside package (an installed distribution's entry point) used from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from whetstone.data import examples_dir
from whetstone.errors import ConfigError
from whetstone.models import BACKENDS, load_model
from whetstone.models.backends import QUANTIZED_META, resolve


def test_each_spec_form_picks_its_backend(tmp_path: Path) -> None:
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / QUANTIZED_META).write_text("{}")
    assert resolve("fake:3:0.5") == ("fake", "3:0.5")
    assert resolve("fake") == ("fake", "") and resolve("default") == ("default", "")
    assert resolve("openai:gpt-x") == ("openai", "gpt-x")
    assert resolve("hf:org/name") == ("hf", "org/name")
    assert resolve("org/name") == ("hf", "org/name")
    assert resolve(str(tmp_path / "m.gguf")) == ("gguf", str(tmp_path / "m.gguf"))
    assert resolve(str(tmp_path / "int8")) == ("int8", str(tmp_path / "int8"))
    assert set(BACKENDS.names()) >= {"default", "fake", "openai", "gguf", "hf", "int8"}
    assert all(BACKENDS.metadata(n)["help"] for n in ("fake", "openai", "int8"))


def test_an_unknown_scheme_is_refused_with_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"unknown model backend 'fak' \(did you mean 'fake'\?\)"):
        load_model("fak:3")


def test_the_fake_backend_takes_seed_and_delay() -> None:
    model = load_model("fake:4:0")
    assert model.identity.name == "fake-4"


PLUGIN = '''
from whetstone.models.fake import FakeModel


def load(rest, options):
    """A demo backend: a fake model under its own name."""
    model = FakeModel(seed=int(rest or 0))
    model.identity = model.identity.model_copy(update={"backend": "demo", "name": f"demo-{rest}"})
    return model
'''


def test_a_backend_from_an_installed_distribution_serves_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "demo_backend.py").write_text(PLUGIN)
    info = site / "demo_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[whetstone.backends]\ndemo = demo_backend:load\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200", "NO_COLOR": "1"}
    task = examples_dir() / "support_intents.yaml"
    args = ["evaluate", "--model", "demo:7", "-t", str(task), "--limit", "5", "--out", str(out)]
    args += ["--db", f"sqlite:///{tmp_path / 'w.db'}"]
    proc = subprocess.run(
        [sys.executable, "-m", "whetstone.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["name"] == "demo-7" and results["model"]["backend"] == "demo"
