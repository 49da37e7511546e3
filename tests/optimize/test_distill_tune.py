"""`whetstone tune` over distillation settings: the "distill" trainer kind in a 2-trial study.

Each trial's objective is recomputed by evaluating its saved student with `whetstone.evaluate`;
the teacher's outputs are computed by the first trial only (the offline cache is shared).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("optuna")

from tests.optimize.test_distill_support import one_thread, topic_teacher  # noqa: F401
from whetstone.optimize.distill_cache import TeacherCache
from whetstone.optimize.trials import get_trainer


def test_distill_is_a_registered_trainer_kind() -> None:
    from whetstone.optimize.distill import run_trial
    from whetstone.optimize.distill_config import DistillConfig

    spec = get_trainer("distill")
    assert spec.runner is run_trial and spec.config_type is DistillConfig


def test_two_trial_study_over_distillation_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from whetstone.evaluate.engine import evaluate
    from whetstone.optimize.tune_config import TuneConfig
    from whetstone.optimize.tuning import tune

    setup = topic_teacher()
    calls: list[int] = []
    original = TeacherCache._teacher_outputs

    def counting(self: TeacherCache, teacher: Any, batch: Any, pad_id: int) -> Any:
        calls.append(len(batch))
        return original(self, teacher, batch, pad_id)

    monkeypatch.setattr(TeacherCache, "_teacher_outputs", counting)
    db = f"sqlite:///{tmp_path / 'ws.db'}"
    config = TuneConfig.model_validate(
        {
            "study": "distill-settings",
            "trainer": {
                "kind": "distill",
                "config": {
                    "teacher": str(setup["teacher"]),
                    "student": {"layers": 2},
                    "data": {"task": str(setup["train"]), "max_length": 32},
                    "training": {"epochs": 1, "batch_size": 16, "learning_rate": 2e-3},
                    "cache_dir": str(tmp_path / "cache"),
                    "device": "cpu",
                },
            },
            "search_space": {
                "loss.temperature": {"type": "float", "low": 1.0, "high": 4.0},
                "loss.alpha": {"type": "float", "low": 0.3, "high": 0.9},
                "loss.beta": {"type": "float", "low": 0.1, "high": 0.9},
                "student.layers": {"type": "int", "low": 1, "high": 2},
            },
            "objectives": [{"task": "topics_eval", "metric": "accuracy"}],
            "validation": {"tasks": [str(setup["eval"])], "limit": 60},
            "sampler": {"type": "random", "seed": 3},
            "n_trials": 2,
            "compare": {"enabled": False},
            "output_dir": str(tmp_path / "study"),
            "db": db,
        }
    )
    result = tune(config, db=db)
    done = [t for t in result.trials if t.state == "COMPLETE"]
    assert len(done) == 2
    assert done[0].params != done[1].params
    assert sum(calls) == 300  # the first trial cached the teacher; the second only read it
    for trial in done:
        assert trial.model_path and Path(trial.model_path, "config.json").is_file()
        ev = evaluate(trial.model_path, [setup["eval"]], limit=60, db=db)
        acc = np.mean([s.metrics["accuracy"] for s in ev.samples])
        assert trial.values == [pytest.approx(acc)]
        from whetstone.optimize.distill_student import load_local

        layers = load_local(trial.model_path).model.config.num_hidden_layers
        assert layers == trial.params["student.layers"]
