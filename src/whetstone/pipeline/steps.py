"""The pipeline's bridges to the other steps: feedback, error analysis, data audit, optimization.

Each bridge calls the step's own public API, which stores the step's result as an artifact;
the pipeline records the stage and keeps a pointer to that artifact. A step that this install
of whetstone does not provide is refused before any work, with the reason, and so is a step
configuration its own schema refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.pipeline.records import StepArtifact
from whetstone.pipeline.schema import (
    AuditStep,
    DiagnoseStep,
    FeedbackStep,
    ModelOptions,
    Optimization,
    PipelineConfig,
)
from whetstone.pipeline.stages import StageLedger, StageRecord, stage_key
from whetstone.steps import STEPS, load_target
from whetstone.store import Store, request_hash


@dataclass
class MadeModel:
    """What an optimization produced: a model to evaluate, and the tasks it answers (if
    the step says)."""

    model: str
    options: ModelOptions
    tasks: list[str] | None = None


def progress_kwargs(ledger: StageLedger, step: str) -> dict[str, Any]:
    """Progress displays for a step's own API (its `progress=`/`reporter=` arguments), when
    the pipeline's reporter offers them (the CLI does: rich bars)."""
    offer = getattr(ledger.reporter, "step_kwargs", None)
    return dict(offer(step)) if callable(offer) else {}


def step_api(step: str) -> Any:
    """The public function behind `step`, or a ConfigError saying this install lacks it."""
    return STEPS.get(step).load(step, "run")


def _config_model(step: str) -> type[BaseModel] | None:
    model: type[BaseModel] | None = STEPS.get(step).load(step, "config")
    return model


def validate_step_config(step: str, where: str, raw: dict[str, Any], base_dir: Path) -> Any:
    """The step's own config model from `raw`; errors name the pipeline field and the key."""
    model = _config_model(step)
    if model is None:
        return raw
    values = {**raw, "base_dir": base_dir} if "base_dir" in model.model_fields else raw
    try:
        return model.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            known = ", ".join(n for n in model.model_fields if n != "base_dir")
            msg = f"unknown key (expected one of: {known})"
        elif first["type"] == "missing":
            msg = "required but missing"
        raise ConfigError(f"field '{where}.{loc}': {msg}") from err


def preflight(config: PipelineConfig) -> None:
    """Refuse, before any work, a step this install cannot run or whose config is wrong."""
    where = f"pipeline '{config.name}'"
    try:
        if config.feedback:
            step_api("feedback")
        if config.diagnose:
            step_api("diagnose")
            validate_step_config(
                "diagnose", "diagnose.options", config.diagnose.options, config.base_dir
            )
        for i, audit in enumerate(config.audit):
            step_api("audit")
            validate_step_config("audit", f"audit[{i}].options", audit.options, config.base_dir)
        for i, opt in enumerate(config.optimize):
            step_api(opt.method)
            raw = optimization_config(config, opt, "<model>")
            validate_step_config(opt.method, f"optimize[{i}].config", raw, config.base_dir)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err


# --------------------------------------------------------------------------- feedback


def feedback_stage(ledger: StageLedger, store: Store, spec: FeedbackStep) -> StepArtifact:
    """The campaign's summary (ratings, preferences, agreement) from the feedback studio."""
    judgments = load_target("feedback", "whetstone.feedback:judgments")
    summary = step_api("feedback")
    fb_store = Store(spec.db) if spec.db else store
    found = judgments(fb_store, spec.campaign)
    inputs = {
        "campaign": spec.campaign,
        "db": spec.db,
        "judgments": request_hash([j.model_dump(mode="json") for j in found]),
    }

    def work() -> dict[str, Any]:
        result = summary(fb_store, spec.campaign)
        if fb_store is not store:  # the report reads the pipeline's store
            store.put_artifact("feedback", spec.campaign, result.model_dump(mode="json"))
        return {"kind": "feedback", "key": spec.campaign, "judgments": len(found)}

    record = ledger.run("feedback", inputs, work)
    return StepArtifact(step="feedback", kind="feedback", key=record.outputs["key"])


def feedback_judgments(store: Store, spec: FeedbackStep) -> list[Any]:
    """The campaign's judgments (for error analysis)."""
    judgments = load_target("feedback", "whetstone.feedback:judgments")
    return list(judgments(Store(spec.db) if spec.db else store, spec.campaign))


# --------------------------------------------------------------------------- diagnosis


def diagnose_stage(
    ledger: StageLedger, store: Store, config: PipelineConfig, run_id: str
) -> StepArtifact:
    """Error analysis of the baseline run (and of the campaign's judgments, if any)."""
    spec: DiagnoseStep = config.diagnose  # type: ignore[assignment]
    diagnose = step_api("diagnose")
    options = validate_step_config("diagnose", "diagnose.options", spec.options, config.base_dir)
    feedback = feedback_judgments(store, config.feedback) if config.feedback else []
    taxonomy = str(config.resolve(spec.taxonomy)) if spec.taxonomy else None
    tasks = [str(config.resolve(t)) for t in config.tasks]
    inputs = {
        "run": run_id,
        "options": spec.options,
        "taxonomy": _file_hash(taxonomy),
        "feedback": request_hash([j.model_dump(mode="json") for j in feedback]),
        "tasks": tasks,
    }

    def work() -> dict[str, Any]:
        result = diagnose(
            [run_id],
            feedback=feedback,
            db=store,
            taxonomy=taxonomy,
            tasks=tasks,
            options=options,
            out_dir=config.workdir_path / "diagnosis",
            **progress_kwargs(ledger, "diagnose"),
        )
        return {"kind": "diagnosis", "key": result.key}

    record = ledger.run(
        "diagnose",
        inputs,
        work,
        still_valid=lambda out: store.get_artifact("diagnosis", out["key"]) is not None,
    )
    return StepArtifact(step="diagnose", kind="diagnosis", key=record.outputs["key"])


def _file_hash(path: str | None) -> str | None:
    if path is None or not Path(path).is_file():
        return path
    return request_hash(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- audit


def audit_stage(
    ledger: StageLedger,
    store: Store,
    config: PipelineConfig,
    spec: AuditStep,
    tasks: dict[str, Path],
    run_id: str,
) -> StepArtifact:
    """Audit one training data file against the evaluation data of the pipeline's tasks.

    `tasks` maps task names to their data files; `run_id` is the baseline run, whose per-item
    metric on `spec.task` is compared between clean and contaminated items.
    """
    audit = step_api("audit")
    name = spec.name or Path(spec.data).stem
    data = config.resolve(spec.data)
    if not data.is_file():
        raise ConfigError(f"pipeline '{config.name}': audit data {spec.data!r} not found ({data})")
    options = validate_step_config("audit", f"audit[{name}].options", spec.options, config.base_dir)
    evals = list(dict.fromkeys(str(tasks[t]) for t in (spec.against or list(tasks))))
    inputs = {
        "data": _file_hash(str(data)),
        "evals": {e: _file_hash(e) for e in evals},
        "options": spec.options,
        "run": run_id if spec.task else None,
        "task": spec.task,
        "metric": spec.metric,
    }

    def work() -> dict[str, Any]:
        result = audit(
            str(data),
            evals,
            config=options,
            run=run_id if spec.task else None,
            run_task=spec.task,
            metric=spec.metric,
            out_dir=config.workdir_path / "audit" / name,
            store=store,
            **progress_kwargs(ledger, "audit"),
        )
        return {"kind": "audit", "key": result.audit_id}

    record = ledger.run(
        f"audit/{name}",
        inputs,
        work,
        still_valid=lambda out: store.get_artifact("audit", out["key"]) is not None,
    )
    key = record.outputs["key"]
    return StepArtifact(step="audit", kind="audit", key=key, title=f"Audit of {spec.data}")


# --------------------------------------------------------------------------- optimization

#: The field of each method's config that names the model it starts from.
INPUT_FIELD = {"finetune": "model", "distill": "teacher", "quantize": "model"}


def optimization_config(config: PipelineConfig, opt: Optimization, model: str) -> dict[str, Any]:
    """The method's config with the pipeline's defaults: its output folder and store, and the
    model it starts from (the pipeline's model, or the candidate named in `from`)."""
    raw = dict(opt.config)
    out = config.workdir_path.resolve() / "optimize" / opt.name
    raw.setdefault("output_dir", str(out))
    field = INPUT_FIELD.get(opt.method)
    if field is not None:
        raw.setdefault(field, model)
    if opt.method == "tune":
        raw.setdefault("study", f"{config.name}-{opt.name}")
    return raw


def optimize_stage(
    ledger: StageLedger,
    store: Store,
    config: PipelineConfig,
    opt: Optimization,
    start_model: str,
    upstream: str = "",
) -> tuple[StageRecord, StepArtifact, MadeModel]:
    """Run one optimization; returns its stage record, its stored result and the model made."""
    func = step_api(opt.method)
    where = f"optimize[{opt.name}].config"
    raw = optimization_config(config, opt, start_model)
    raw["db"] = store_url(store) if raw.get("db") is None else raw["db"]
    cfg = validate_step_config(opt.method, where, raw, config.base_dir)
    inputs = {
        "method": opt.method,
        # the store is where results go, not what they are made from (and its URL may hold
        # a password, which stage records must not)
        "config": cfg.model_dump(mode="json", exclude={"db"}),
        "files": _input_files(cfg),
        "upstream": upstream,
    }
    kind = STEPS.get(opt.method).artifact_kind
    stage = f"optimize/{opt.name}"

    def work() -> dict[str, Any]:
        kwargs = progress_kwargs(ledger, opt.method)
        if opt.method in RESUMABLE:
            kwargs["resume"] = _same_attempt(cfg, stage_key(ledger.pipeline, stage, inputs))
        try:
            result = func(cfg, **kwargs)
        except WhetstoneError:
            raise
        except Exception as err:  # a training crash: recorded, the other candidates go on
            raise WhetstoneError(f"{type(err).__name__}: {err}") from err
        return {"kind": kind, **_made(opt.method, result)}

    record = ledger.run(
        stage,
        inputs,
        work,
        still_valid=lambda out: Path(out.get("model", "")).exists(),
    )
    out = record.outputs
    art = StepArtifact(
        step=opt.method, kind=kind, key=out["key"], title=f"{opt.name} ({opt.method})"
    )
    made = MadeModel(
        model=out.get("model", ""),
        options=ModelOptions(),
        tasks=out.get("tasks"),
    )
    return record, art, made


#: Methods whose training continues from its newest checkpoint when asked to resume.
RESUMABLE = ("finetune", "distill")
#: The file in a method's output folder naming the stage (inputs hash) that is writing it.
ATTEMPT_FILE = ".whetstone-stage"


def _same_attempt(cfg: Any, key: str) -> bool:
    """Whether the output folder holds an unfinished attempt of this very stage (same inputs),
    whose checkpoints training may then continue from; marks the folder for this stage."""
    out = cfg.resolve(cfg.output_dir) if hasattr(cfg, "resolve") else Path(cfg.output_dir)
    marker = Path(out) / ATTEMPT_FILE
    same = marker.is_file() and marker.read_text(encoding="utf-8").strip() == key
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n", encoding="utf-8")
    return same


def store_url(store: Store) -> str:
    """The store's URL with its password, for steps that open the store themselves."""
    url = getattr(store, "_url", None)  # Store.url hides the password
    return url.render_as_string(hide_password=False) if url is not None else store.url


def _input_files(cfg: Any) -> dict[str, str | None]:
    """Hashes of the data files a method's config names (so edited data reruns the stage)."""
    found: dict[str, str | None] = {}
    dumped = cfg.model_dump(mode="json")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, str) and node.endswith(
            (".jsonl", ".json", ".csv", ".tsv", ".yaml", ".parquet", ".txt")
        ):
            file = cfg.resolve(node) if hasattr(cfg, "resolve") else Path(node)
            found[path] = _file_hash(str(file))

    walk(dumped, "")
    return found


def _made(method: str, result: Any) -> dict[str, Any]:
    """The stored result's key and the model it made, by method."""
    if method == "finetune":
        return {"key": result.name, "model": result.training.model_path or ""}
    if method == "tune":
        if not result.best_model:
            raise WhetstoneError(f"study {result.study_name}: no trial left a model on disk")
        return {"key": result.study_name, "model": result.best_model}
    if method == "distill":
        return {"key": result.key, "model": result.student_dir}
    # quantize: the int8 folder (read back by the int8 model backend)
    return {"key": result.key, "model": str(Path(result.output_dir) / "model")}
