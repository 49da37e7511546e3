"""A trainer kind for testing the study machinery in milliseconds: no training at all.

Its "model" is the fake bigram model `fake:SEED`, with the seed a function of the parameters, so
a trial's objective (scored by `tune` on a validation task) is known exactly and can be
recomputed independently from the fake model's probability table. Intermediate values follow
`curve`, so pruning decisions can be replayed in plain Optuna.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from whetstone.optimize.trials import TrialOutcome, TrialReport, apply_params, register_trainer

MODULE = __name__


class FakeTrainerConfig(BaseModel):
    """Parameters the fake trainer "learns" with."""

    model_config = ConfigDict(extra="forbid")

    x: float = 0.0
    y: str = "a"
    n: int = 1
    steps: int = Field(default=3, ge=1)
    # seconds each step takes (to leave a trial running while a test kills its worker)
    sleep: float = Field(default=0.0, ge=0)
    base_dir: Path = Field(default=Path("."), exclude=True)


def seed_of(config: FakeTrainerConfig) -> int:
    """The fake model's seed for these parameters."""
    return round(config.x * 1000) + 7 * config.n + 31 * ord(config.y[0])


def curve(config: FakeTrainerConfig, step: int) -> float:
    """The intermediate value reported at ``step``."""
    return config.x * step / config.steps


def run_fake(
    config: FakeTrainerConfig, params: dict[str, Any], output_dir: Path, report: TrialReport
) -> TrialOutcome:
    """Report the curve, stop when told; "save" a marker file in the trial folder."""
    cfg = apply_params(config, params)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "model.txt").write_text(f"fake:{seed_of(cfg)}\n", encoding="utf-8")
    path = f"fake:{seed_of(cfg)}"
    for step in range(1, cfg.steps + 1):
        time.sleep(cfg.sleep)
        if report.monitor is not None and report(curve(cfg, step), step):
            return TrialOutcome(model_path=path, pruned=True, compute={"train_samples": step})
    return TrialOutcome(model_path=path, compute={"train_samples": float(cfg.steps)})


register_trainer("fake", run_fake, FakeTrainerConfig, baseline=lambda c: "fake:0")
