"""The trial-runner registry and `apply_params`, the contract other trainer kinds build on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from whetstone.errors import ConfigError
from whetstone.optimize import FinetuneConfig, apply_params, get_trainer, trainer_kinds
from whetstone.optimize.trials import TrialReport

REPO = Path(__file__).resolve().parents[2]


def test_params_set_nested_fields_and_create_sections(tmp_path):
    base = FinetuneConfig(model="minilm", data={"task": "t.yaml"}, base_dir=tmp_path)
    tuned = apply_params(
        base, {"training.learning_rate": 3e-4, "lora.r": 16, "training.batch_size": 8}
    )
    assert (tuned.training.learning_rate, tuned.training.batch_size) == (3e-4, 8)
    assert tuned.lora is not None and (tuned.lora.r, tuned.lora.alpha) == (16, 16)
    assert tuned.base_dir == tmp_path and base.lora is None  # the base config is untouched
    with pytest.raises(ConfigError, match=r"parameter 'training\.batch_size'"):
        apply_params(base, {"training.batch_size": 0})
    with pytest.raises(ConfigError, match=r"parameter 'training\.learning_rat'"):
        apply_params(base, {"training.learning_rat": 0.1})
    with pytest.raises(ConfigError, match="'model' is not a section"):
        apply_params(base, {"model.r": 1})


def test_the_finetune_kind_is_known_in_a_fresh_process():
    code = (
        "from whetstone.optimize.trials import get_trainer; "
        "print(get_trainer('finetune').config_type.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "FinetuneConfig"
    assert {"finetune", "distill"} <= set(trainer_kinds())


def test_kinds_from_modules_named_in_the_environment(monkeypatch):
    with pytest.raises(ConfigError, match="unknown trainer kind 'fake-kind'"):
        get_trainer("fake-kind")
    monkeypatch.setenv("WHETSTONE_TRAINER_MODULES", "tests.optimize.fake_trainer")
    assert get_trainer("fake").config_type.__name__ == "FakeTrainerConfig"
    monkeypatch.setenv("WHETSTONE_TRAINER_MODULES", "no.such.module")
    with pytest.raises(ConfigError, match=r"cannot import 'no\.such\.module'"):
        get_trainer("another-kind")


def test_a_plain_report_records_and_never_prunes():
    report = TrialReport()
    assert report(0.5, 1) is False and report(0.7, 2) is False
    assert report.values == {1: 0.5, 2: 0.7} and not report.pruned
