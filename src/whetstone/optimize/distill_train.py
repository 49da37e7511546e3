"""Training the student: the fine-tuning Trainer (`whetstone.optimize.callbacks.TaskTrainer`,
same arguments, checkpoints, evaluations and progress) with a loss that mixes the teacher's
soft targets (online, or from the offline cache) with the hard labels and, optionally, hidden
states.

Without a teacher the same Trainer trains the same student on the hard labels alone: the
ablation that measures what the teacher adds.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from whetstone.optimize.distill_cache import CachedTargets
from whetstone.optimize.distill_data import IGNORE, collate, scored_positions
from whetstone.optimize.distill_eval import StageReporter
from whetstone.optimize.distill_losses import (
    LossParts,
    LossWeights,
    TopK,
    combine,
    hidden_cosine_loss,
    soft_loss,
)
from whetstone.optimize.trials import Monitor, TrialReport


@dataclass
class Teacher:
    """Where soft targets come from: a model run online, or the offline cache."""

    model: Any = None
    cache: CachedTargets | None = None
    vocab: int | None = None  # logits columns shared by teacher and student


@dataclass
class TrainStats:
    """What training did: steps, time, and the mean loss terms over the last logged steps."""

    steps: int = 0
    seconds: float = 0.0
    examples: int = 0
    loss: float = 0.0
    soft: float = 0.0
    hard: float = 0.0
    hidden: float = 0.0
    pruned: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


def distill_loss(
    model: Any, inputs: dict[str, Any], teacher: Teacher | None, weights: LossWeights
) -> LossParts:
    """The loss of one batch (see whetstone.optimize.distill_losses)."""
    labels = inputs["labels"]
    use_hidden = teacher is not None and weights.hidden_weight > 0
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        output_hidden_states=use_hidden,
    )
    classifier = labels.dim() == 1
    rows = inputs["attention_mask"].bool() if classifier else scored_positions(labels)
    vocab = teacher.vocab if teacher is not None and teacher.vocab else out.logits.shape[-1]
    student_logits = out.logits if classifier else out.logits[..., :vocab][rows]
    if classifier:
        hard = F.cross_entropy(out.logits.float(), labels)
    else:
        targets = torch.full_like(labels, IGNORE)
        targets[:, :-1] = labels[:, 1:]
        hard = F.cross_entropy(student_logits.float(), targets[rows])
    if teacher is None or (weights.alpha == 0 and not use_hidden):
        return combine(weights, hard, None, None)
    soft, teacher_hidden = _teacher_side(teacher, inputs, rows, classifier, use_hidden, vocab)
    soft_value = soft_loss(student_logits, soft, weights)
    hidden = None
    if use_hidden and teacher_hidden is not None:
        hidden = hidden_cosine_loss(out.hidden_states[-1][rows], teacher_hidden)
    return combine(weights, hard, soft_value, hidden)


def _teacher_side(
    teacher: Teacher,
    inputs: dict[str, Any],
    rows: torch.Tensor,
    classifier: bool,
    use_hidden: bool,
    vocab: int,
) -> tuple[Any, torch.Tensor | None]:
    """The teacher's soft targets (logits or cached top-k) and hidden states for the batch."""
    device = rows.device
    if teacher.cache is not None:
        index = inputs["index"].cpu()
        soft: Any
        if classifier:
            soft = teacher.cache.rows("logits", index).to(device)
        else:
            top = teacher.cache.top_k(index)
            rest = None if top.rest is None else top.rest.to(device)
            soft = TopK(top.ids.to(device), top.logprobs.to(device), rest)
        hidden = None
        if use_hidden:
            hidden = teacher.cache.rows("hidden", index, by_token=True).to(device)
        return soft, hidden
    with torch.no_grad():
        out = teacher.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            output_hidden_states=use_hidden,
        )
    soft = out.logits if classifier else out.logits[..., :vocab][rows]
    return soft, out.hidden_states[-1][rows] if use_hidden else None


@functools.cache
def distill_trainer_class() -> type:
    """The fine-tuning TaskTrainer with the distillation loss (built on first use)."""
    from whetstone.optimize.callbacks import task_trainer_class

    class DistillTrainer(task_trainer_class()):  # type: ignore[misc]
        """compute_loss = alpha * soft + (1 - alpha) * hard + hidden_weight * hidden."""

        def __init__(
            self, *args: Any, teacher: Teacher | None, weights: LossWeights, **kwargs: Any
        ) -> None:
            super().__init__(*args, **kwargs)
            self.teacher = teacher
            self.weights = weights
            self.parts: deque[LossParts] = deque(maxlen=max(1, int(self.args.logging_steps)))

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            parts = distill_loss(model, inputs, self.teacher, self.weights)
            self.parts.append(replace(parts, total=parts.total.detach()))
            return (parts.total, None) if return_outputs else parts.total

    return DistillTrainer


class _StageProgress:
    """The fine-tuning TrainingProgress drawn as one stage of a StageReporter."""

    def __init__(self, reporter: StageReporter, stage: str) -> None:
        self.reporter, self.stage, self.done = reporter, stage, 0

    def training_started(self, total_steps: int) -> None:
        """Open the stage's bar."""
        self.reporter.task_started(self.stage, total_steps)

    def training_step(self, step: int, logs: dict[str, float]) -> None:
        """Advance to `step`."""
        if step > self.done:
            self.reporter.advance(step - self.done)
            self.done = step

    def training_finished(self) -> None:
        """Close the bar."""
        self.reporter.task_finished(self.stage, None)


def _task_metrics(monitor: Monitor, tokenizer: Any, task_type: str) -> Any:
    """Every metric of the monitored task on the weights in memory (for tune's pruner)."""
    from whetstone.optimize.evaluation import in_memory_model, score_tasks

    def run(model: Any) -> dict[str, float]:
        lm = in_memory_model(model, tokenizer, task_type, "training")
        result = score_tasks(lm, monitor.tasks, seed=monitor.seed)[monitor.task][0]
        return {f"{monitor.task}/{m}": float(v.value) for m, v in result.metrics.items()}

    return run


def train_student(
    student: Any,
    tokenizer: Any,
    task_type: str,
    examples: list[dict[str, Any]],
    config: Any,
    weights: LossWeights,
    output_dir: Path,
    teacher: Teacher | None = None,
    reporter: StageReporter | None = None,
    stage: str = "train",
    report: TrialReport | None = None,
    resume: bool = False,
) -> TrainStats:
    """Train `student` in place on `examples` as `config.training` says.

    Checkpoints go to output_dir/checkpoints (deleted once training ends); with `resume` a
    killed run continues from the newest one. With `report.monitor`, evaluations score that
    task on the weights in memory and hand its metric to `report`, which can stop the run.
    """
    from transformers.trainer_callback import PrinterCallback

    from whetstone.optimize.callbacks import (
        checkpoint_steps,
        keep_best_checkpoints,
        progress_callback,
        report_callback,
    )
    from whetstone.optimize.finetuning import training_arguments
    from whetstone.optimize.memory import release_memory

    if config.training.freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)
    if teacher is not None and teacher.model is not None:
        teacher.model.eval()
    monitor = report.monitor if report is not None else None
    checkpoints = output_dir / "checkpoints"
    args = training_arguments(config, checkpoints, len(examples), monitor, trial_mode=False)
    callbacks = [keep_best_checkpoints(1, None, False)]
    if report is not None and monitor is not None:
        callbacks.append(report_callback(report, monitor.key))
    if reporter is not None:
        callbacks.append(progress_callback(_StageProgress(reporter, stage)))
    trainer = distill_trainer_class()(
        model=student,
        args=args,
        train_dataset=[{**ex, "index": i} for i, ex in enumerate(examples)],
        eval_dataset=monitor.tasks if monitor else None,
        data_collator=functools.partial(collate, pad_id=int(tokenizer.pad_token_id)),
        callbacks=callbacks,
        task_metrics=_task_metrics(monitor, tokenizer, task_type) if monitor else lambda m: {},
        teacher=teacher,
        weights=weights,
    )
    trainer.remove_callback(PrinterCallback)
    latest = checkpoint_steps(checkpoints)
    resume_from = str(checkpoints / f"checkpoint-{latest[-1]}") if resume and latest else None
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    stats = _stats(trainer, time.perf_counter() - started, len(examples), report)
    shutil.rmtree(checkpoints, ignore_errors=True)
    student.eval()
    del trainer
    release_memory()
    return stats


def _stats(trainer: Any, seconds: float, n: int, report: TrialReport | None) -> TrainStats:
    parts = list(trainer.parts)
    history = [
        {"step": float(h["step"]), "loss": float(h["loss"])}
        for h in trainer.state.log_history
        if "loss" in h and "step" in h
    ]

    def mean(values: list[float]) -> float:
        return float(sum(values) / len(values)) if values else math.nan

    return TrainStats(
        steps=int(trainer.state.global_step),
        seconds=round(seconds, 2),
        examples=n,
        loss=mean([float(p.total) for p in parts]),
        soft=mean([p.soft for p in parts]),
        hard=mean([p.hard for p in parts]),
        hidden=mean([p.hidden for p in parts]),
        pruned=bool(report is not None and report.pruned),
        history=history,
    )
