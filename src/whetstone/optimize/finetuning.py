"""`finetune`: transfer learning with the transformers Trainer, then a paired evaluation.

The recipe, top to bottom (`train_model`):

1. read the training task's items and turn them into token examples (`training_data`);
2. load the base model with the head the task type needs, wrap it with LoRA if asked;
3. train with `TaskTrainer`: every evaluation scores a whetstone task on the weights in memory,
   so early stopping and the best-checkpoint choice use a whetstone metric;
4. load the best weights, save a normal Hugging Face model (LoRA merged) to OUTPUT/model.

`finetune` then evaluates the base and the fine-tuned model on the same task files, stores both
runs and pairs them item by item (as `whetstone compare` does). This module also registers the
``finetune`` trainer kind that `whetstone tune` searches.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whetstone.errors import ConfigError
from whetstone.optimize.base_models import (
    ResolvedType,
    add_lora,
    load_base,
    load_tokenizer,
    model_source,
    parameter_counts,
    resolve_task_type,
    save_model,
)
from whetstone.optimize.callbacks import (
    TrainingProgress,
    checkpoint_steps,
    keep_best_checkpoints,
    progress_callback,
    report_callback,
    task_trainer_class,
)
from whetstone.optimize.config_files import load_config
from whetstone.optimize.finetune_config import FinetuneConfig
from whetstone.optimize.memory import release_memory
from whetstone.optimize.results import FinetuneResult, TrainingSummary, task_metrics, write_json
from whetstone.optimize.training_data import (
    CausalCollator,
    TrainSet,
    causal_examples,
    classification_examples,
    load_train_set,
    train_task,
)
from whetstone.optimize.trials import (
    Monitor,
    TrainerSpec,
    TrialOutcome,
    TrialReport,
    apply_params,
)

BeforeTraining = Callable[[Any, Any, ResolvedType], None]
"""Called with (model, tokenizer, task type) once the base model is built, before training."""


@dataclass
class Prepared:
    """Everything a training run needs, built before the first step."""

    train: TrainSet
    task_type: ResolvedType
    source: Path | str
    tokenizer: Any
    examples: list[dict[str, Any]]
    model: Any


def prepare(config: FinetuneConfig) -> Prepared:
    """Read the data, tokenize it and build the (LoRA-wrapped) base model."""
    train = load_train_set(config)
    source = model_source(config)
    task_type = resolve_task_type(config, train.task, source)
    tokenizer = load_tokenizer(source)
    if task_type == "classification":
        examples = classification_examples(train, tokenizer, config)
        labels = [(train.task.labels or {})[k] for k in train.task.labels or {}]
    else:
        examples = causal_examples(train, tokenizer, config)
        labels = None
    model = load_base(source, task_type, tokenizer, labels, config.training.seed)
    if config.lora is not None:
        model = add_lora(model, config.lora, task_type)
    return Prepared(train, task_type, source, tokenizer, examples, model)


def monitor_from_config(config: FinetuneConfig) -> Monitor | None:
    """The early-stopping metric as a `Monitor` over the eval task it names."""
    es = config.early_stopping
    if es is None:
        return None
    from whetstone.evaluate.engine import prepare_tasks

    tasks = prepare_tasks([config.resolve(t) for t in config.eval.tasks], config.eval.limit)
    name = es.task or tasks[0].config.name
    chosen = [p for p in tasks if p.config.name == name]
    if not chosen:
        names = ", ".join(p.config.name for p in tasks)
        raise ConfigError(f"early_stopping.task: no eval task named '{name}' (tasks: {names})")
    return Monitor(chosen, name, es.metric, es.resolved_direction, config.eval.seed)


def _precision(config: FinetuneConfig, device: str) -> dict[str, Any]:
    wanted = config.training.precision
    if wanted in ("auto", "float32") or device == "cpu":
        return {}
    return {"bf16": wanted == "bfloat16", "fp16": wanted == "float16"}


def training_arguments(
    config: FinetuneConfig,
    checkpoints: Path,
    n_examples: int,
    monitor: Monitor | None,
    trial_mode: bool,
) -> Any:
    """transformers' TrainingArguments for this run: evaluations (and checkpoints) at fixed
    fractions of an epoch, so trials with different batch sizes report at the same data seen."""
    from transformers import TrainingArguments

    from whetstone.models.hf import resolve_device

    t = config.training
    device = resolve_device(config.device)
    per_epoch = max(1, math.ceil(n_examples / (t.batch_size * t.gradient_accumulation_steps)))
    every = max(1, per_epoch // t.evaluations_per_epoch)
    best: dict[str, Any] = {}
    if monitor is not None:
        best = {
            "eval_strategy": "steps",
            "eval_steps": every,
            "load_best_model_at_end": True,
            "metric_for_best_model": f"eval_{monitor.key}",
            "greater_is_better": monitor.direction == "maximize",
        }
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=min(t.logging_steps, every),
        save_strategy="steps",
        save_steps=every,
        save_total_limit=None,
        save_only_model=trial_mode,
        report_to="none",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="all",
        **_precision(config, device),
        **best,
    )


def _task_metrics(monitor: Monitor, tokenizer: Any, task_type: ResolvedType) -> Any:
    """The Trainer's evaluation: every metric of the monitored task on the weights in memory."""
    from whetstone.optimize.evaluation import in_memory_model, score_tasks

    def run(model: Any) -> dict[str, float]:
        lm = in_memory_model(model, tokenizer, task_type, "training")
        result = score_tasks(lm, monitor.tasks, seed=monitor.seed)[monitor.task][0]
        if monitor.metric not in result.metrics:
            raise ConfigError(
                f"metric '{monitor.metric}' is not reported by task '{monitor.task}' "
                f"(it reports: {', '.join(result.metrics)})"
            )
        scores = {monitor.key: float(result.metrics[monitor.metric].value)}  # the watched one first
        scores.update({f"{monitor.task}/{m}": float(v.value) for m, v in result.metrics.items()})
        return scores

    return run


def _callbacks(
    config: FinetuneConfig,
    monitor: Monitor | None,
    report: TrialReport | None,
    progress: TrainingProgress | None,
    keep: int,
) -> list[Any]:
    from transformers import EarlyStoppingCallback

    callbacks: list[Any] = []
    es = config.early_stopping
    if es is not None and monitor is not None:
        callbacks.append(EarlyStoppingCallback(es.patience, es.threshold))
    if report is not None and monitor is not None:
        callbacks.append(report_callback(report, monitor.key))
    key = f"eval_{monitor.key}" if monitor is not None else None
    greater = monitor is not None and monitor.direction == "maximize"
    callbacks.append(keep_best_checkpoints(keep, key, greater))
    if progress is not None:
        callbacks.append(progress_callback(progress))
    return callbacks


def train_model(
    config: FinetuneConfig,
    output_dir: Path,
    *,
    monitor: Monitor | None = None,
    report: TrialReport | None = None,
    progress: TrainingProgress | None = None,
    resume: bool = False,
    trial_mode: bool = False,
    before_training: BeforeTraining | None = None,
) -> TrainingSummary:
    """Train as ``config`` says; save the best model to ``output_dir/model``.

    ``monitor`` (default: the early-stopping metric) is evaluated at every evaluation and picks
    the best checkpoint; ``report`` receives its values and can stop a trial. In ``trial_mode``
    checkpoints hold no optimizer state and are deleted once the model is saved.
    """
    monitor = monitor or monitor_from_config(config)
    prep = prepare(config)
    if before_training is not None:
        before_training(prep.model, prep.tokenizer, prep.task_type)
    checkpoints = output_dir / "checkpoints"
    args = training_arguments(config, checkpoints, len(prep.examples), monitor, trial_mode)
    keep = 1 if trial_mode else config.training.keep_checkpoints
    collator = _collator(prep)
    from transformers.trainer_callback import PrinterCallback

    trainer = task_trainer_class()(
        model=prep.model,
        args=args,
        train_dataset=prep.examples,
        # never iterated (evaluation scores tasks); the Trainer only checks one is there
        eval_dataset=monitor.tasks if monitor else None,
        data_collator=collator,
        callbacks=_callbacks(config, monitor, report, progress, keep),
        task_metrics=(
            _task_metrics(monitor, prep.tokenizer, prep.task_type) if monitor else lambda m: {}
        ),
    )
    trainer.remove_callback(PrinterCallback)  # logs go to the history and `progress`
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_point(checkpoints) if resume else None)
    seconds = time.perf_counter() - started
    pruned = bool(report is not None and report.pruned)
    summary = _summary(config, prep, trainer, monitor, seconds, pruned)
    if not pruned:
        adapter = output_dir / "adapter" if config.lora and config.lora.save_adapter else None
        save_model(trainer.model, prep.tokenizer, output_dir / "model", adapter_dir=adapter)
        summary.model_path = str(output_dir / "model")
        summary.adapter_path = str(adapter) if adapter else None
    if trial_mode:
        shutil.rmtree(checkpoints, ignore_errors=True)
    summary.checkpoints = [
        str(checkpoints / f"checkpoint-{s}") for s in checkpoint_steps(checkpoints)
    ]
    del trainer, prep, collator
    release_memory()
    return summary


def resume_point(checkpoints: Path) -> str | None:
    """The newest complete checkpoint (the Trainer writes trainer_state.json last, so a
    checkpoint without it was cut short by a crash)."""
    complete = [
        s
        for s in checkpoint_steps(checkpoints)
        if (checkpoints / f"checkpoint-{s}" / "trainer_state.json").is_file()
    ]
    return str(checkpoints / f"checkpoint-{complete[-1]}") if complete else None


def _collator(prep: Prepared) -> Any:
    if prep.task_type == "classification":
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(prep.tokenizer)
    return CausalCollator(int(prep.tokenizer.pad_token_id))


def _summary(
    config: FinetuneConfig,
    prep: Prepared,
    trainer: Any,
    monitor: Monitor | None,
    seconds: float,
    pruned: bool,
) -> TrainingSummary:
    state = trainer.state
    t = config.training
    trainable, total = parameter_counts(trainer.model)
    best_step = None
    if monitor is not None and state.best_model_checkpoint:
        best_step = int(Path(state.best_model_checkpoint).name.split("-")[-1])
    stopped_early = bool(
        config.early_stopping is not None and state.global_step < state.max_steps and not pruned
    )
    return TrainingSummary(
        model_path=None,
        task_type=prep.task_type,
        method="lora" if config.lora is not None else "full",
        base_model=config.model,
        train_task=prep.train.task.name,
        train_examples=len(prep.examples),
        trainable_parameters=trainable,
        total_parameters=total,
        steps=int(state.global_step),
        epochs=float(state.epoch or 0.0),
        train_seconds=round(seconds, 3),
        train_samples=int(state.global_step) * t.batch_size * t.gradient_accumulation_steps,
        train_tokens=int(getattr(state, "num_input_tokens_seen", 0) or 0),
        train_flos=float(state.total_flos or 0.0),
        monitor=monitor.key if monitor else None,
        best_metric=None if state.best_metric is None else float(state.best_metric),
        best_step=best_step,
        stopped_early=stopped_early,
        pruned=pruned,
        history=[dict(h) for h in state.log_history],
    )


# --------------------------------------------------------------------------- the whole run


def _base_for_eval(config: FinetuneConfig, source: Path | str) -> Any:
    """The base model as a whetstone backend: `load_model` of its spec, so its identity (and
    response cache) is the one every other run of that model uses."""
    from whetstone.models import load_model

    spec = config.model if config.model == "default" else str(source)
    return load_model(spec, device=config.device)


def finetune(
    config: FinetuneConfig | str | Path,
    *,
    db: str | None = None,
    resume: bool = False,
    progress: TrainingProgress | None = None,
    reporter: Any = None,
) -> FinetuneResult:
    """Fine-tune as the config says, then evaluate base and result on the same task files.

    Both evaluations are stored as runs (``whetstone compare BASE TUNED`` pairs them again);
    the result is stored as artifact ``("finetune", NAME)`` and written to
    ``OUTPUT/result.json``. ``reporter`` receives the evaluations' progress.
    """
    from whetstone.evaluate.compare import compare_samples
    from whetstone.evaluate.engine import Evaluation, evaluate, prepare_tasks
    from whetstone.models.classifier import SequenceClassifier, state_hash
    from whetstone.store import Store

    cfg = config if isinstance(config, FinetuneConfig) else load_config(config, FinetuneConfig)
    store = Store(db or cfg.db)
    eval_paths = [cfg.resolve(t) for t in cfg.eval.tasks]
    prepared = prepare_tasks(eval_paths, cfg.eval.limit) if eval_paths else []
    tasks = [p.config for p in prepared]
    output = cfg.resolve(cfg.output_dir)
    runs: dict[str, Evaluation] = {}

    def evaluate_untrained_head(model: Any, tokenizer: Any, task_type: ResolvedType) -> None:
        # a new classification head exists only in memory: evaluate it before it trains
        if task_type == "classification" and tasks:
            name = f"{cfg.model} (untrained head, seed {cfg.training.seed})"
            lm = SequenceClassifier(
                model=model, tokenizer=tokenizer, name=name, model_hash=state_hash(model)
            )
            runs["base"] = evaluate(
                lm, tasks, limit=cfg.eval.limit, seed=cfg.eval.seed, db=store, reporter=reporter
            )

    summary = train_model(
        cfg, output, progress=progress, resume=resume, before_training=evaluate_untrained_head
    )
    if tasks and "base" not in runs:
        base = _base_for_eval(cfg, model_source(cfg))
        runs["base"] = evaluate(
            base, tasks, limit=cfg.eval.limit, seed=cfg.eval.seed, db=store, reporter=reporter
        )
        base.close()
        release_memory()
    if tasks and summary.model_path:
        runs["tuned"] = evaluate(
            summary.model_path,
            tasks,
            limit=cfg.eval.limit,
            seed=cfg.eval.seed,
            db=store,
            out_dir=output / "eval",
            reporter=reporter,
            device=cfg.device,
        )
        release_memory()
    result = _result(cfg, output, summary, runs, compare_samples)
    store.put_artifact(
        "finetune",
        result.name,
        result.model_dump(mode="json"),
        refs=[r for r in (result.base_run, result.tuned_run) if r],
    )
    write_json(output / "result.json", result)
    return result


def _result(
    cfg: FinetuneConfig,
    output: Path,
    summary: TrainingSummary,
    runs: dict[str, Any],
    compare: Any,
) -> FinetuneResult:
    base, tuned = runs.get("base"), runs.get("tuned")
    comparison = None
    if base is not None and tuned is not None:
        comparison = compare(
            base.samples,
            tuned.samples,
            run_a=base.result.run_id,
            run_b=tuned.result.run_id,
            seed=cfg.eval.seed,
        )
    return FinetuneResult(
        name=cfg.run_name,
        created_at=datetime.now(UTC),
        output_dir=str(output),
        training=summary,
        eval_tasks=[str(cfg.resolve(t)) for t in cfg.eval.tasks],
        base_run=base.result.run_id if base else None,
        tuned_run=tuned.result.run_id if tuned else None,
        base_metrics=task_metrics(base.result) if base else {},
        tuned_metrics=task_metrics(tuned.result) if tuned else {},
        comparison=comparison,
        config=cfg.model_dump(mode="json"),
    )


# --------------------------------------------------------------------------- tune integration


def run_finetune_trial(
    config: FinetuneConfig, params: dict[str, Any], output_dir: Path, report: TrialReport
) -> TrialOutcome:
    """The ``finetune`` trial runner: train with the trial's parameters; evaluations during
    training score the study's validation metric (``report.monitor``), reported for pruning."""
    trial_config = apply_params(config, params)
    if report.monitor is not None and trial_config.early_stopping is not None:
        # early stopping watches the study's objective, on the study's validation task
        es = trial_config.early_stopping.model_copy(
            update={"task": report.monitor.task, "metric": report.monitor.metric}
        )
        trial_config = trial_config.model_copy(update={"early_stopping": es})
    summary = train_model(
        trial_config, output_dir, monitor=report.monitor, report=report, trial_mode=True
    )
    return TrialOutcome(
        model_path=summary.model_path or "",
        metrics={} if summary.best_metric is None else {summary.monitor or "": summary.best_metric},
        compute=summary.compute,
        pruned=summary.pruned,
    )


def finetune_baseline(config: FinetuneConfig) -> Any:
    """What a study's best fine-tune is compared with: the base model (for a classifier, the
    encoder with its new head as initialized from the training seed, before any step)."""
    from whetstone.models.classifier import SequenceClassifier, state_hash

    task = train_task(config)
    source = model_source(config)
    task_type = resolve_task_type(config, task, source)
    if task_type == "causal_lm":
        return _base_for_eval(config, source)
    tokenizer = load_tokenizer(source)
    labels = list((task.labels or {}).values())
    model = load_base(source, task_type, tokenizer, labels, config.training.seed)
    name = f"{config.model} (untrained head, seed {config.training.seed})"
    return SequenceClassifier(
        model=model, tokenizer=tokenizer, name=name, model_hash=state_hash(model)
    )


TRAINER = TrainerSpec(
    "finetune",
    run_finetune_trial,
    FinetuneConfig,
    baseline=finetune_baseline,
    description="transfer learning with the transformers Trainer (full or LoRA)",
)
"""The ``finetune`` trainer kind (registered lazily in `whetstone.optimize.trials`)."""
