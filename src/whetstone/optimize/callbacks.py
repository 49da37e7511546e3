"""Pieces plugged into the transformers Trainer: task-metric evaluation, pruning reports, the
best-K checkpoint policy, and progress.

`TaskTrainer.evaluate` scores whetstone tasks on the model being trained, so everything the
Trainer does with evaluation metrics (``metric_for_best_model``, ``load_best_model_at_end``,
``EarlyStoppingCallback``) works on a whetstone metric.
"""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from whetstone.optimize.trials import TrialReport

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingProgress(Protocol):
    """Receives progress while a model trains (the CLI draws a bar with it)."""

    def training_started(self, total_steps: int) -> None:
        """Training begins; ``total_steps`` optimizer steps are planned."""

    def training_step(self, step: int, logs: dict[str, float]) -> None:
        """Optimizer step ``step`` is done; ``logs`` holds any values logged at it."""

    def training_finished(self) -> None:
        """Training is over."""


@functools.cache
def task_trainer_class() -> type:
    """`transformers.Trainer` whose evaluation scores whetstone tasks (built on first use)."""
    from transformers import Trainer

    class TaskTrainer(Trainer):
        """A Trainer whose ``evaluate`` returns whetstone task metrics as ``eval_TASK/METRIC``."""

        def __init__(
            self, *args: Any, task_metrics: Callable[[Any], dict[str, float]], **kwargs: Any
        ) -> None:
            super().__init__(*args, **kwargs)
            self.task_metrics = task_metrics

        def evaluate(
            self,
            eval_dataset: Any = None,
            ignore_keys: list[str] | None = None,
            metric_key_prefix: str = "eval",
        ) -> dict[str, float]:
            """Score the tasks on the current weights, log them and run the callbacks."""
            scores = self.task_metrics(self.model)
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in scores.items()}
            metrics["epoch"] = float(self.state.epoch or 0.0)
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(
                self.args, self.state, self.control, metrics
            )
            return metrics

    return TaskTrainer


@functools.cache
def callback_base() -> type:
    """`transformers.TrainerCallback` (imported on first use)."""
    from transformers import TrainerCallback

    return TrainerCallback


def report_callback(report: TrialReport, key: str) -> Any:
    """Hands each evaluation's ``key`` value to ``report`` (step 1, 2, ...); stops training
    when the report says the trial is pruned."""

    class ReportToTrial(callback_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            self.evaluations = 0

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            metrics = kwargs.get("metrics") or {}
            if f"eval_{key}" not in metrics:
                return control
            self.evaluations += 1
            if report(metrics[f"eval_{key}"], self.evaluations):
                control.should_training_stop = True
                control.should_save = False
            return control

    return ReportToTrial()


def checkpoint_steps(folder: Path) -> list[int]:
    """Steps of the ``checkpoint-N`` folders under ``folder``, ascending."""
    if not folder.is_dir():
        return []
    found = (CHECKPOINT.match(p.name) for p in folder.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def best_steps(
    history: list[dict[str, Any]], key: str | None, greater: bool, steps: list[int], k: int
) -> list[int]:
    """The ``k`` checkpoint steps with the best ``key`` in the log history (newest ``k`` when
    there is no metric); ties keep the earlier step."""
    if key is None:
        return steps[-k:]
    score = {int(h["step"]): float(h[key]) for h in history if key in h and "step" in h}
    scored = [s for s in steps if s in score]
    ranked = sorted(scored, key=lambda s: (-score[s] if greater else score[s], s))
    return sorted(ranked[:k])


def keep_best_checkpoints(k: int, key: str | None, greater: bool) -> Any:
    """After each save, delete every checkpoint but the best ``k`` (and, while training goes
    on, the newest, which a resumed run continues from); at the end only the best ``k`` stay."""

    def prune(args: Any, state: Any, keep_latest: bool) -> None:
        folder = Path(args.output_dir)
        steps = checkpoint_steps(folder)
        keep = set(best_steps(state.log_history, key, greater, steps, k))
        if keep_latest and steps:
            keep.add(steps[-1])
        for step in steps:
            if step not in keep:
                shutil.rmtree(folder / f"checkpoint-{step}", ignore_errors=True)

    class KeepBestCheckpoints(callback_base()):  # type: ignore[misc]
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            prune(args, state, keep_latest=True)
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            prune(args, state, keep_latest=False)
            return control

    return KeepBestCheckpoints()


def progress_callback(progress: TrainingProgress) -> Any:
    """Forwards the Trainer's steps and logs to a `TrainingProgress`."""

    class Progress(callback_base()):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            progress.training_started(int(state.max_steps))
            return control

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            logs = {k: float(v) for k, v in (kwargs.get("logs") or {}).items() if _number(v)}
            progress.training_step(int(state.global_step), logs)
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            progress.training_step(int(state.global_step), {})
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            progress.training_finished()
            return control

    return Progress()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
