"""The model a fine-tune starts from: where it is, what head it gets, LoRA, and how it is saved."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from whetstone.errors import ConfigError, ModelError, missing_extra
from whetstone.optimize.finetune_config import FinetuneConfig, LoraSpec
from whetstone.tasks.schema import TaskConfig

ResolvedType = Literal["causal_lm", "classification"]
MINILM = "minilm"


def _transformers() -> Any:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise missing_extra("transformers", "hf") from exc
    # whetstone draws its own progress; transformers' bars and notices would interleave
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    return transformers


def model_source(config: FinetuneConfig) -> Path | str:
    """The folder (or cached hub id) of the base model: `default`, `minilm` or the user's."""
    spec = config.model
    if spec == "default":
        from whetstone.models.gguf import default_model_dir

        return default_model_dir()[0]
    if spec == MINILM:
        from whetstone.embeddings import default_encoder_path

        return default_encoder_path()
    local = config.resolve(spec)
    if local.exists():
        return local
    if spec.startswith((".", "/", "~")):
        raise ModelError(f"model: '{spec}' does not exist (looked for {local})")
    return spec


def architectures(source: Path | str) -> list[str]:
    """The ``architectures`` of a model's config.json (empty when unknown)."""
    path = Path(source) / "config.json"
    if path.is_file():
        return list(json.loads(path.read_text(encoding="utf-8")).get("architectures") or [])
    try:
        cfg = _transformers().AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model '{source}': cannot read its config ({exc})") from exc
    return list(getattr(cfg, "architectures", None) or [])


def is_causal_lm(source: Path | str) -> bool:
    """Whether the model's architecture is a causal language model."""
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures(source))


def resolve_task_type(config: FinetuneConfig, task: TaskConfig, source: Path | str) -> ResolvedType:
    """causal_lm or classification; `auto` picks classification for a classification task on a
    model that is not a causal LM (an encoder such as MiniLM)."""
    if config.task != "auto":
        return config.task
    if task.kind == "classification" and not is_causal_lm(source):
        return "classification"
    if not is_causal_lm(source):
        raise ConfigError(
            f"model '{config.model}' is not a causal LM, so it can only be fine-tuned as a "
            f"sequence classifier on a classification task ('{task.name}' is {task.kind})"
        )
    return "causal_lm"


def load_tokenizer(source: Path | str) -> Any:
    """The model's tokenizer, with a padding token (its EOS when it has none)."""
    tokenizer = _transformers().AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(
    source: Path | str,
    task_type: ResolvedType,
    tokenizer: Any,
    labels: list[str] | None,
    seed: int,
) -> Any:
    """The base model in float32 with the head the task type needs.

    A classification head is new (initialized from ``seed``) unless the model already is a
    classifier over the same labels.
    """
    tf = _transformers()
    tf.set_seed(seed)
    try:
        if task_type == "causal_lm":
            model = tf.AutoModelForCausalLM.from_pretrained(str(source), dtype="float32")
        else:
            names = labels or []
            model = tf.AutoModelForSequenceClassification.from_pretrained(
                str(source),
                dtype="float32",
                num_labels=len(names),
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
                ignore_mismatched_sizes=True,
            )
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"model '{source}': cannot load it for {task_type} ({first})") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def add_lora(model: Any, spec: LoraSpec, task_type: ResolvedType) -> Any:
    """The model wrapped with LoRA adapters (PEFT); the classification head stays trainable."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise missing_extra("peft", "optimize") from exc
    config = LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        task_type=TaskType.CAUSAL_LM if task_type == "causal_lm" else TaskType.SEQ_CLS,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"lora.target_modules: {str(exc).splitlines()[0]}") from exc


def parameter_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished folder into place, replacing an older one (never half-written)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def save_model(model: Any, tokenizer: Any, folder: Path, *, adapter_dir: Path | None) -> Path:
    """Save a normal Hugging Face model (LoRA merged into the weights), written atomically.

    With LoRA and ``adapter_dir``, the adapter alone is saved there as well. Returns ``folder``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    merged = model
    if hasattr(model, "merge_and_unload"):
        if adapter_dir is not None:
            tmp_adapter = Path(tempfile.mkdtemp(prefix=".adapter.", dir=folder.parent))
            model.save_pretrained(tmp_adapter)
            replace_dir(tmp_adapter, adapter_dir)
        merged = model.merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
