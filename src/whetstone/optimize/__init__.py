"""Optimize: fine-tuning (full or LoRA), hyperparameter search (Optuna), distillation.

Heavy libraries (torch, transformers, peft, optuna) are imported inside the functions that use
them, so importing this package stays cheap.
"""

from whetstone.optimize.finetune_config import FinetuneConfig
from whetstone.optimize.finetuning import finetune
from whetstone.optimize.html import render_html_section
from whetstone.optimize.results import FinetuneResult, StudyResult, TrialRecord
from whetstone.optimize.trials import (
    Monitor,
    TrialOutcome,
    TrialReport,
    TrialRunner,
    apply_params,
    get_trainer,
    register_trainer,
    trainer_kinds,
)
from whetstone.optimize.tune_config import TuneConfig
from whetstone.optimize.tuning import run_trial, tune

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "Monitor",
    "StudyResult",
    "TrialOutcome",
    "TrialRecord",
    "TrialReport",
    "TrialRunner",
    "TuneConfig",
    "apply_params",
    "finetune",
    "get_trainer",
    "register_trainer",
    "render_html_section",
    "run_trial",
    "trainer_kinds",
    "tune",
]
