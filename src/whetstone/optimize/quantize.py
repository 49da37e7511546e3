"""Post-training dynamic int8 quantization for CPU (torch.ao), reported like distillation:
size on disk, CPU latency and throughput, and each task's metric against the float model.

Dynamic quantization stores the weights of every `nn.Linear` as int8 and quantizes activations
on the fly, batch by batch; it needs no calibration data. A causal LM's output head stays in
float (it is the most sensitive layer and often shares its weights with the embeddings).

A quantized model is saved as a folder with the float model's config and tokenizer plus
`model_int8.pt` (the quantized state dict) and `quantization.json`; `load_quantized` rebuilds
it. It is a PyTorch module, not a folder `from_pretrained` reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whetstone.errors import ModelError, missing_extra
from whetstone.models.backends import QUANTIZED_META, ModelOptions
from whetstone.models.base import LanguageModel
from whetstone.optimize.distill_config import QuantizeConfig
from whetstone.optimize.distill_eval import (
    StageReporter,
    backend,
    evaluate_model,
    model_report,
)
from whetstone.optimize.distill_measure import (
    Footprint,
    folder_size_mb,
    machine,
    measure_speeds,
    probe_input,
)
from whetstone.optimize.distill_report import (
    QuantizeResult,
    compare_models,
    html_section,
    speed_ratios,
)

WEIGHTS_FILE = "model_int8.pt"
META_FILE = QUANTIZED_META
ARTIFACT_KIND = "quantize"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "hf") from exc
    return torch


def quantizable(model: Any, skip: list[str], causal: bool) -> list[str]:
    """Names of the Linear modules that dynamic quantization will convert."""
    torch = _torch()
    skipped = [*skip, *(_head_names(model) if causal else [])]
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not any(name.endswith(s) for s in skipped)
    ]


def _head_names(model: Any) -> list[str]:
    head = model.get_output_embeddings()
    return [name for name, module in model.named_modules() if module is head]


def quantize_model(model: Any, names: list[str]) -> Any:
    """A copy of `model` with the Linear modules `names` quantized to dynamic int8."""
    torch = _torch()
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if not names:
        raise ModelError("dynamic quantization: the model has no Linear layer left to quantize")
    spec = dict.fromkeys(names, default_dynamic_qconfig)
    with warnings.catch_warnings():  # torch.ao's eager API is deprecated in favour of torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False).eval()


def save_quantized(model: Any, tokenizer: Any, names: list[str], folder: Path) -> None:
    """Write the folder (config, tokenizer, int8 state dict, module list) atomically."""
    torch = _torch()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        torch.save(model.state_dict(), staging / WEIGHTS_FILE)
        meta = {
            "scheme": "dynamic_int8",
            "engine": torch.backends.quantized.engine,
            "modules": names,
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_quantized(folder: str | Path, task: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) from a folder written by `save_quantized`."""
    from transformers import AutoConfig, AutoTokenizer

    from whetstone.optimize.distill_student import TaskType, auto_class, detect_task

    torch = _torch()
    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise ModelError(f"{folder}: not a quantized model folder (no {META_FILE})")
    meta = json.loads((folder / META_FILE).read_text())
    kind: TaskType = detect_task(folder) if task == "auto" else task  # type: ignore[assignment]
    model = auto_class(kind).from_config(AutoConfig.from_pretrained(folder)).eval()
    quantized = quantize_model(model, meta["modules"])
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    quantized.load_state_dict(state)
    return quantized, AutoTokenizer.from_pretrained(folder)


def load_backend(spec: str, options: ModelOptions) -> LanguageModel:
    """The ``int8`` backend: a folder written by `save_quantized`, wrapped in the backend the
    quantization step evaluates it with (identified by a digest of the folder's files)."""
    from whetstone.optimize.distill_student import detect_task

    folder = Path(spec).expanduser()
    task = detect_task(folder)
    model, tokenizer = load_quantized(folder, task)
    lm: LanguageModel = backend(model, tokenizer, task, f"{folder.name} (int8)", _digest(folder))
    return lm


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _probe(config: QuantizeConfig, tokenizer: Any) -> list[int] | None:
    """A real input for the speed probe: the first evaluation task's first prompts."""
    from whetstone.tasks.loading import load_items, load_tasks
    from whetstone.tasks.prompts import render

    if not config.eval.tasks:
        text = "The quick brown fox jumps over the lazy dog. " * 64
        return probe_input([{"input_ids": tokenizer(text)["input_ids"]}], config.speed.seq_len)
    task = load_tasks(config.resolve(config.eval.tasks[0]))[0]
    items = load_items(task, 64)
    key = task.text if task.kind == "perplexity" else None
    texts = [str(i[key]) if key else render(task.prompt, i, task) for i in items]
    examples = [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]
    return probe_input(examples, config.speed.seq_len)


def quantize(
    config: QuantizeConfig | str | Path, reporter: StageReporter | None = None
) -> QuantizeResult:
    """Quantize a local model to dynamic int8, evaluate both, store the report.

    The result is written to OUTPUT_DIR/quantize.json and stored as artifact
    ("quantize", name); the int8 model is saved to OUTPUT_DIR/model.
    """
    from whetstone.evaluate.engine import package_versions
    from whetstone.optimize.config_files import load_config
    from whetstone.optimize.distill_student import load_local, parameter_count
    from whetstone.optimize.results import write_json
    from whetstone.store import Store

    if not isinstance(config, QuantizeConfig):
        config = load_config(config, QuantizeConfig)
    store = Store(config.db)
    original = load_local(config.model, config.task, config.base_dir)
    causal = original.task == "causal_lm"
    names = quantizable(original.model, config.skip, causal)
    int8 = quantize_model(original.model, names)
    out = config.resolve(config.output_dir)
    save_quantized(int8, original.tokenizer, names, out / "model")
    probe = _probe(config, original.tokenizer)
    params = parameter_count(original.model)
    assert original.folder is not None
    from whetstone.models.hf import weights_hash

    digest = weights_hash(original.folder)[:16]
    speeds = (
        measure_speeds({"original": original.model, "int8": int8}, probe, config.speed, causal)
        if config.speed.enabled and probe is not None
        else {}
    )
    reports = []
    evaluations = []
    for role, model, size, h in (
        ("original", original.model, folder_size_mb(original.folder), digest),
        ("int8", int8, folder_size_mb(out / "model"), f"{digest}-int8"),
    ):
        lm = backend(model, original.tokenizer, original.task, f"{config.model} ({role})", h)
        ev = evaluate_model(
            lm, config.eval.tasks, config.eval, config.base_dir, store, reporter, role
        )
        evaluations.append(ev)
        reports.append(
            model_report(
                role,
                config.model if role == "original" else f"{config.model} int8",
                model,
                Footprint(parameters=params, size_mb=size),
                speeds.get(role),
                ev,
                original.folder if role == "original" else out / "model",
            )
        )
    rows = compare_models(
        reports[0],
        reports[1],
        evaluations[0].samples if evaluations[0] else [],
        evaluations[1].samples if evaluations[1] else [],
        seed=config.eval.seed,
    )
    latency, throughput = speed_ratios(reports[0], reports[1])
    result = QuantizeResult(
        key=config.run_name,
        created_at=datetime.now(UTC),
        task_type=original.task,
        config=config.model_dump(mode="json"),
        original=reports[0],
        quantized=reports[1],
        rows=rows,
        output_dir=str(out),
        speedup_latency=latency,
        speedup_throughput=throughput,
        size_ratio=round(reports[1].size_mb / reports[0].size_mb, 4),
        machine=machine(),
        versions=package_versions(),
    )
    write_json(out / "quantize.json", result)
    refs = [r.run_id for r in reports if r.run_id]
    store.put_artifact(ARTIFACT_KIND, result.key, result.model_dump(mode="json"), refs=refs)
    return result


def render_html_section(result: QuantizeResult) -> str:
    """The quantization report as a self-contained HTML fragment."""
    return html_section(result)
