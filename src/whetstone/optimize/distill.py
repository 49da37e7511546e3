"""`distill`: train a smaller student to imitate a teacher, then measure what it kept.

The run, top to bottom: load the teacher; make the student (a subset of the teacher's layers,
a smaller config, or a model of its own); tokenize the training task; get the teacher's soft
targets (offline: a cache of top-k log-probabilities built once; online: the teacher on every
batch); train; optionally train the same student without the teacher (the ablation) and
quantize the student to int8; then evaluate every model on the same task files and measure
size and CPU speed. The result is written to OUTPUT_DIR/distill.json and stored as artifact
("distill", name); the student is a normal Hugging Face folder, OUTPUT_DIR/student.

`whetstone tune` searches distillation settings through the trainer kind "distill"
(`run_trial`), e.g. `loss.temperature`, `loss.alpha`, `loss.beta`, `student.layers`.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whetstone.optimize.distill_config import DistillConfig
from whetstone.optimize.distill_eval import (
    StageReporter,
    backend,
    evaluate_model,
    footprint,
    model_report,
)
from whetstone.optimize.distill_report import (
    CacheReport,
    DistillResult,
    TrainingReport,
    compare_models,
    html_section,
    speed_ratios,
)
from whetstone.optimize.trials import TrainerSpec, TrialOutcome, TrialReport, apply_params

ARTIFACT_KIND = "distill"

__all__ = [
    "ARTIFACT_KIND",
    "DistillConfig",
    "DistillResult",
    "distill",
    "render_html_section",
    "run_trial",
]


@dataclass
class Prepared:
    """Everything training needs, loaded and checked."""

    config: DistillConfig
    teacher: Any  # LoadedModel
    student: Any  # LoadedModel
    training_set: Any  # TrainingSet
    weights: Any  # LossWeights
    vocab: int | None
    hidden_used: bool


def _config(config: DistillConfig | str | Path) -> DistillConfig:
    from whetstone.optimize.config_files import load_config

    return config if isinstance(config, DistillConfig) else load_config(config, DistillConfig)


def prepare(config: DistillConfig) -> Prepared:
    """Load the teacher, make the student, tokenize the data; every input error surfaces here."""
    import torch

    from whetstone.models.hf import resolve_device
    from whetstone.optimize.distill_data import build_training_set
    from whetstone.optimize.distill_losses import LossWeights, can_align_hidden
    from whetstone.optimize.distill_student import load_local, make_student

    torch.manual_seed(config.training.seed)
    teacher = load_local(config.teacher, config.task, config.base_dir)
    student = make_student(teacher, config.student, config.base_dir)
    training_set = build_training_set(config, teacher.tokenizer, teacher.task, student.model)
    teacher.model.to(resolve_device(config.device))  # the Trainer moves the student itself
    hidden_used = config.loss.hidden_weight > 0 and can_align_hidden(
        student.model.config, teacher.model.config
    )
    weights = LossWeights(
        divergence=config.loss.divergence,
        temperature=config.loss.temperature,
        alpha=config.loss.alpha,
        beta=config.loss.beta,
        hidden_weight=config.loss.hidden_weight if hidden_used else 0.0,
    )
    vocab = None
    if teacher.task == "causal_lm":
        vocab = min(
            int(teacher.model.get_output_embeddings().weight.shape[0]),
            int(student.model.get_output_embeddings().weight.shape[0]),
        )
    return Prepared(config, teacher, student, training_set, weights, vocab, hidden_used)


def _cache_root(config: DistillConfig) -> Path:
    if config.cache_dir:
        return config.resolve(config.cache_dir)
    from whetstone.models.gguf import cache_root

    return cache_root().parent / "distill"


def teacher_source(
    prep: Prepared, reporter: StageReporter | None = None
) -> tuple[Any, CacheReport | None]:
    """The teacher side of training: the cache (built when missing) or the model itself."""
    from whetstone.models.hf import weights_hash
    from whetstone.optimize.distill_cache import TeacherCache
    from whetstone.optimize.distill_train import Teacher

    config = prep.config
    if config.mode == "online":
        return Teacher(model=prep.teacher.model, vocab=prep.vocab), None
    assert prep.teacher.folder is not None
    key = {
        "teacher": weights_hash(prep.teacher.folder),
        "data": prep.training_set.fingerprint(),
        "task": prep.teacher.task,
        "top_k": config.top_k,
        "hidden": prep.hidden_used,
        "vocab": prep.vocab,
    }
    cache = TeacherCache(_cache_root(config), key)
    examples = prep.training_set.examples
    if not cache.complete:
        if reporter:
            reporter.task_started("teacher outputs (cached once)", len(examples))
        pad = int(prep.teacher.tokenizer.pad_token_id)
        cache.build(
            prep.teacher.model,
            examples,
            pad,
            config.training.batch_size,
            reporter.advance if reporter else None,
        )
        if reporter:
            reporter.task_finished("teacher outputs (cached once)", None)
    report = CacheReport(
        folder=str(cache.folder),
        examples=len(examples),
        computed=cache.computed,
        top_k=config.top_k,
    )
    return Teacher(cache=cache.load(), vocab=prep.vocab), report


def train(
    prep: Prepared,
    model: Any,
    teacher: Any,
    work_dir: Path,
    reporter: StageReporter | None,
    stage: str,
    report: TrialReport | None = None,
    resume: bool = False,
) -> TrainingReport:
    """Train `model` (the student, or its copy for the ablation when `teacher` is None)."""
    from whetstone.optimize.distill_train import train_student

    stats = train_student(
        model,
        prep.teacher.tokenizer,
        prep.teacher.task,
        prep.training_set.examples,
        prep.config,
        prep.weights,
        work_dir,
        teacher=teacher,
        reporter=reporter,
        stage=stage,
        report=report,
        resume=resume,
    )
    return TrainingReport(**{k: getattr(stats, k) for k in TrainingReport.model_fields})


def distill(
    config: DistillConfig | str | Path,
    reporter: StageReporter | None = None,
    *,
    resume: bool = False,
) -> DistillResult:
    """Distill the teacher into the student, evaluate both and store the report.

    With `resume`, training continues from the newest checkpoint of a killed run (the offline
    teacher cache always resumes by itself).
    """
    from whetstone.optimize.base_models import save_model
    from whetstone.store import Store

    config = _config(config)
    store = Store(config.db)
    prep = prepare(config)
    out = config.resolve(config.output_dir).resolve()
    ablation_model = copy.deepcopy(prep.student.model) if config.ablation else None
    source, cache_report = teacher_source(prep, reporter)
    training = train(
        prep, prep.student.model, source, out / "work", reporter, "train student", resume=resume
    )
    tokenizer = prep.teacher.tokenizer
    save_model(prep.student.model, tokenizer, out / "student", adapter_dir=None)
    ablation_training = None
    if ablation_model is not None:
        ablation_training = train(
            prep,
            ablation_model,
            None,
            out / "work-ablation",
            reporter,
            "train without teacher",
            resume=resume,
        )
        save_model(ablation_model, tokenizer, out / "ablation", adapter_dir=None)
    for work in ("work", "work-ablation"):
        shutil.rmtree(out / work, ignore_errors=True)
    return _report(
        prep, out, store, training, ablation_training, ablation_model, cache_report, reporter
    )


def _report(
    prep: Prepared,
    out: Path,
    store: Any,
    training: TrainingReport,
    ablation_training: TrainingReport | None,
    ablation_model: Any,
    cache_report: CacheReport | None,
    reporter: StageReporter | None,
) -> DistillResult:
    """Quantize (when asked), evaluate and measure every model; write and store the result."""
    from whetstone.evaluate.engine import package_versions
    from whetstone.models.hf import weights_hash
    from whetstone.optimize.distill_measure import (
        folder_size_mb,
        machine,
        measure_speeds,
        probe_input,
    )
    from whetstone.optimize.quantize import quantizable, quantize_model, save_quantized
    from whetstone.optimize.results import write_json

    config = prep.config
    causal = prep.teacher.task == "causal_lm"
    tokenizer = prep.teacher.tokenizer
    probe = probe_input(prep.training_set.examples, config.speed.seq_len)
    for model in (prep.teacher.model, prep.student.model, ablation_model):
        if model is not None:
            model.to("cpu")  # sizes and speeds are measured on CPU; so is the evaluation
    assert prep.teacher.folder is not None
    models: list[tuple[str, str, Any, Path]] = [
        ("teacher", config.teacher, prep.teacher.model, prep.teacher.folder),
        ("student", prep.student.source, prep.student.model, out / "student"),
    ]
    if ablation_model is not None:
        models.append(("ablation", "same student, no teacher", ablation_model, out / "ablation"))
    if config.quantize:
        names = quantizable(prep.student.model, [], causal)
        int8 = quantize_model(prep.student.model, names)
        save_quantized(int8, tokenizer, names, out / "student-int8")
        models.append(("student-int8", "student, dynamic int8", int8, out / "student-int8"))
    speeds = {}
    if config.speed.enabled:  # the ablation has the student's shape: its speed is the same
        timed = {m[0]: m[2] for m in models if m[0] != "ablation"}
        speeds = measure_speeds(timed, probe, config.speed, causal)
    reports, samples = {}, {}
    student_params = footprint(prep.student.model, 0).parameters
    for role, name, model, folder in models:
        digest = weights_hash(folder if role != "student-int8" else out / "student")[:16]
        digest = f"{digest}-int8" if role == "student-int8" else digest
        size = folder_size_mb(folder)
        fp = footprint(model, size)
        if role == "student-int8":
            fp = fp.model_copy(update={"parameters": student_params})
        lm = backend(model, tokenizer, prep.teacher.task, f"{name} ({role})", digest)
        ev = evaluate_model(
            lm, config.eval.tasks, config.eval, config.base_dir, store, reporter, role
        )
        samples[role] = ev.samples if ev else []
        speed = speeds.get(role, speeds.get("student") if role == "ablation" else None)
        reports[role] = model_report(role, name, model, fp, speed, ev, folder)
    rows = compare_models(
        reports["teacher"],
        reports["student"],
        samples["teacher"],
        samples["student"],
        ablation=reports.get("ablation"),
        ablation_samples=samples.get("ablation"),
        quantized=reports.get("student-int8"),
        seed=config.eval.seed,
    )
    latency, throughput = speed_ratios(reports["teacher"], reports["student"])
    result = DistillResult(
        key=config.run_name,
        created_at=datetime.now(UTC),
        task_type=prep.teacher.task,
        mode=config.mode,
        config={**config.model_dump(mode="json"), "hidden_loss_used": prep.hidden_used},
        teacher=reports["teacher"],
        student=reports["student"],
        ablation=reports.get("ablation"),
        quantized=reports.get("student-int8"),
        rows=rows,
        training=training,
        ablation_training=ablation_training,
        cache=cache_report,
        student_dir=str(out / "student"),
        speedup_latency=latency,
        speedup_throughput=throughput,
        size_ratio=round(reports["student"].size_mb / reports["teacher"].size_mb, 4),
        parameter_ratio=round(reports["student"].parameters / reports["teacher"].parameters, 4),
        machine=machine(),
        versions=package_versions(),
    )
    write_json(out / "distill.json", result)
    refs = [r.run_id for r in reports.values() if r.run_id]
    store.put_artifact(ARTIFACT_KIND, result.key, result.model_dump(mode="json"), refs=refs)
    return result


def render_html_section(result: DistillResult) -> str:
    """The distillation report as a self-contained HTML fragment (for the whole-loop report)."""
    return html_section(result)


# ------------------------------------------------------------------------- tuning


def run_trial(
    config: DistillConfig, params: dict[str, Any], output_dir: Path, report: TrialReport
) -> TrialOutcome:
    """One `whetstone tune` trial: distill with `params` applied and save the student.

    Only the student is trained (no ablation, quantization, evaluation or speed measurement:
    tune evaluates the saved model itself); with `report.monitor` the study's metric is scored
    during training and can prune the trial. In offline mode every trial reads the same teacher
    cache, so the teacher runs once per study.
    """
    from whetstone.optimize.base_models import save_model

    trial = apply_params(config, params).model_copy(
        update={"output_dir": str(output_dir), "ablation": False, "quantize": False}
    )
    prep = prepare(trial)
    source, _ = teacher_source(prep)
    stats = train(prep, prep.student.model, source, output_dir / "work", None, "trial", report)
    shutil.rmtree(output_dir / "work", ignore_errors=True)
    pruned = bool(report.pruned)
    t = trial.training
    if not pruned:
        save_model(
            prep.student.model, prep.teacher.tokenizer, output_dir / "student", adapter_dir=None
        )
    return TrialOutcome(
        model_path="" if pruned else str(output_dir / "student"),
        metrics={"train_loss": stats.loss, "soft_loss": stats.soft, "hard_loss": stats.hard},
        compute={
            "train_seconds": stats.seconds,
            "train_samples": float(stats.steps * t.batch_size * t.gradient_accumulation_steps),
            "steps": float(stats.steps),
        },
        pruned=pruned,
    )


def _baseline(config: DistillConfig) -> str:
    """What the best trial is compared with: the teacher."""
    from whetstone.optimize.distill_student import local_folder

    return str(local_folder(config.teacher, config.base_dir))


TRAINER = TrainerSpec(
    "distill",
    run_trial,
    DistillConfig,
    baseline=_baseline,
    description="knowledge distillation of a teacher into a smaller student",
)
"""The ``distill`` trainer kind (registered lazily in `whetstone.optimize.trials`)."""
