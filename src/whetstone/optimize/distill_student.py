"""Teacher and student models: local folders, student construction and vocabulary checks.

A student is made from the teacher by keeping a subset of its layers (DistilBERT-style: every
other weight, embeddings and head are copied), from the teacher's configuration with fields
changed (randomly initialized), or is an existing model that shares the teacher's vocabulary.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from whetstone.errors import ConfigError, ModelError, missing_extra

TaskType = Literal["causal_lm", "classification"]

_LAYER_KEY = re.compile(r"^(.*?\.(?:layer|layers|h|block|blocks))\.(\d+)\.(.+)$")


@dataclass
class LoadedModel:
    """A transformers model with its tokenizer, where it came from and what it is."""

    model: Any
    tokenizer: Any
    source: str
    folder: Path | None
    task: TaskType


def local_folder(spec: str, base_dir: Path = Path(".")) -> Path:
    """The HF folder behind a local model spec: `default` (Gemma 3 270M), `minilm` (the
    embedded all-MiniLM-L6-v2 encoder), a .gguf file or a folder."""
    if spec == "default":
        from whetstone.models.gguf import default_model_dir

        return default_model_dir()[0]
    if spec == "minilm":
        from whetstone.embeddings import default_encoder_path

        return default_encoder_path()
    if spec.startswith(("openai:", "fake")):
        raise ModelError(
            f"model '{spec}': distillation and quantization need a local model's weights "
            "(a folder, a .gguf file or default)"
        )
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if spec.endswith(".gguf"):
        from whetstone.models.gguf import convert_gguf

        return convert_gguf(path)
    if not (path / "config.json").is_file():
        raise ModelError(
            f"model '{spec}': {path} is not a model folder (expected config.json with weights)"
        )
    return path


def detect_task(folder: Path) -> TaskType:
    """classification for a *ForSequenceClassification architecture, causal_lm for a causal
    LM; anything else (a bare encoder) cannot be distilled."""
    import json

    archs = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in archs):
        return "classification"
    if any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal_lm"
    raise ModelError(
        f"model {folder} ({', '.join(archs) or 'no architecture'}) is neither a causal LM nor "
        "a sequence classifier: fine-tune it first (whetstone finetune) or set task:"
    )


def auto_class(task: TaskType) -> Any:
    """The transformers Auto class for `task`."""
    try:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    except ImportError as exc:
        raise missing_extra("transformers", "hf") from exc
    return AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM


def load_local(
    spec: str,
    task: str = "auto",
    base_dir: Path = Path("."),
    labels: dict[int, str] | None = None,
) -> LoadedModel:
    """Load a local model in float32 on CPU, as a causal LM or a sequence classifier.

    With `labels` (a classifier's id2label), a model without that head (a bare encoder) gets
    a new one, initialized from torch's current seed.
    """
    import torch

    from whetstone.optimize.base_models import load_tokenizer

    folder = local_folder(spec, base_dir)
    kind: TaskType = detect_task(folder) if task == "auto" else task  # type: ignore[assignment]
    head: dict[str, Any] = {}
    if labels is not None and kind == "classification":
        head = {
            "num_labels": len(labels),
            "id2label": dict(labels),
            "label2id": {v: k for k, v in labels.items()},
            "ignore_mismatched_sizes": True,
        }
    try:
        tokenizer = load_tokenizer(folder)
        model = auto_class(kind).from_pretrained(folder, dtype=torch.float32, **head)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"model '{spec}': cannot load it as a {kind} model ({first})") from exc
    return LoadedModel(model.eval(), tokenizer, spec, folder, kind)


def layer_prefix(model: Any) -> str:
    """The state-dict prefix of the stack of layers (`model.layers`, `bert.encoder.layer`)."""
    n = int(model.config.num_hidden_layers)
    found: dict[str, set[int]] = {}
    for key in model.state_dict():
        m = _LAYER_KEY.match(key)
        if m:
            found.setdefault(m.group(1), set()).add(int(m.group(2)))
    for prefix, ids in found.items():
        if ids == set(range(n)):
            return prefix
    raise ModelError(
        f"cannot find the {n} layers of {type(model).__name__} in its weights: make the student "
        "with student.config or student.model instead"
    )


def spread_layers(total: int, keep: int) -> list[int]:
    """`keep` layer indices spread evenly over `total`, first and last included."""
    if keep >= total:
        raise ConfigError(
            f"student.layers: {keep} is not fewer than the teacher's {total} layers "
            f"(expected 1 to {total - 1})"
        )
    if keep == 1:
        return [total - 1]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def _subset_config(config: Any, keep: list[int]) -> Any:
    cfg = copy.deepcopy(config)
    n = int(config.num_hidden_layers)
    for attr in ("layer_types",):  # per-layer settings (sliding vs full attention)
        values = getattr(cfg, attr, None)
        if isinstance(values, list) and len(values) == n:
            setattr(cfg, attr, [values[i] for i in keep])
    cfg.num_hidden_layers = len(keep)
    return cfg


def student_from_layers(teacher: LoadedModel, keep: list[int]) -> Any:
    """A student with the teacher's layers `keep`, everything else copied from the teacher."""
    n = int(teacher.model.config.num_hidden_layers)
    bad = [i for i in keep if i >= n]
    if bad:
        raise ConfigError(f"student.keep: layer {bad[0]} does not exist (the teacher has {n})")
    prefix = layer_prefix(teacher.model)
    student = type(teacher.model)(_subset_config(teacher.model.config, keep))
    source = teacher.model.state_dict()
    mapped = {}
    for key in student.state_dict():
        m = _LAYER_KEY.match(key)
        if m and m.group(1) == prefix:
            key_t = f"{prefix}.{keep[int(m.group(2))]}.{m.group(3)}"
        else:
            key_t = key
        mapped[key] = source[key_t]
    student.load_state_dict(mapped, strict=True)
    return student.eval()


def student_from_config(teacher: LoadedModel, changes: dict[str, Any]) -> Any:
    """A randomly initialized model: the teacher's config with `changes`."""
    config = copy.deepcopy(teacher.model.config)
    vocab = getattr(config, "vocab_size", None)
    if "vocab_size" in changes and changes["vocab_size"] != vocab:
        raise ConfigError(
            f"student.config.vocab_size {changes['vocab_size']} differs from the teacher's "
            f"vocabulary ({vocab} tokens): the student keeps the teacher's tokenizer"
        )
    for key, value in changes.items():
        if not hasattr(config, key):
            raise ConfigError(f"student.config: unknown field '{key}' for {type(config).__name__}")
        setattr(config, key, value)
    n = int(config.num_hidden_layers)
    layer_types = getattr(config, "layer_types", None)
    if "layer_types" not in changes and isinstance(layer_types, list) and len(layer_types) != n:
        pattern = layer_types * (n // max(len(layer_types), 1) + 1)
        config.layer_types = pattern[:n]  # keep the teacher's repeating pattern
    try:
        return type(teacher.model)(config).eval()
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise ConfigError(f"student.config: {str(exc).splitlines()[0]}") from exc


def check_compatible(teacher: LoadedModel, student: LoadedModel) -> None:
    """Raise one ConfigError line when the two cannot be distilled into each other."""
    if teacher.task != student.task:
        raise ConfigError(
            f"teacher '{teacher.source}' is a {teacher.task} model but student "
            f"'{student.source}' is a {student.task} model"
        )
    if teacher.task == "classification":
        t_labels, s_labels = _labels(teacher.model), _labels(student.model)
        if t_labels != s_labels:
            raise ConfigError(
                f"teacher '{teacher.source}' labels {t_labels} and student '{student.source}' "
                f"labels {s_labels} differ: the student must predict the same labels"
            )
    t_vocab, s_vocab = teacher.tokenizer.get_vocab(), student.tokenizer.get_vocab()
    if t_vocab != s_vocab:
        raise ConfigError(
            f"teacher '{teacher.source}' and student '{student.source}' have different "
            f"vocabularies (teacher: {_describe(teacher.tokenizer, t_vocab)}; student: "
            f"{_describe(student.tokenizer, s_vocab)}; {_difference(t_vocab, s_vocab)}): "
            "logit distillation compares the two distributions token by token, so make the "
            "student from the teacher (student.layers, student.keep or student.config) or pick "
            "one that shares its tokenizer"
        )


def _labels(model: Any) -> list[str]:
    id2label = model.config.id2label or {}
    return [str(id2label[i]) for i in sorted(id2label)]


def _describe(tokenizer: Any, vocab: dict[str, int]) -> str:
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    return f"{Path(str(name)).name or type(tokenizer).__name__}, {len(vocab)} tokens"


def _difference(a: dict[str, int], b: dict[str, int]) -> str:
    only_a = sorted(set(a) - set(b), key=a.__getitem__)
    if only_a:
        return f"{len(only_a)} teacher tokens such as {only_a[0]!r} are not in the student's"
    only_b = sorted(set(b) - set(a), key=b.__getitem__)
    if only_b:
        return f"{len(only_b)} student tokens such as {only_b[0]!r} are not in the teacher's"
    moved = sum(1 for tok, i in a.items() if b[tok] != i)
    return f"the same tokens, but {moved} have other ids"


def make_student(teacher: LoadedModel, spec: Any, base_dir: Path) -> LoadedModel:
    """The student described by a StudentSpec, checked against the teacher."""
    if spec.model is not None:
        student = load_local(spec.model, teacher.task, base_dir)
        check_compatible(teacher, student)
        return student
    if spec.config is not None:
        model = student_from_config(teacher, spec.config)
        label = "teacher config with " + ", ".join(f"{k}={v}" for k, v in spec.config.items())
    else:
        source = teacher if spec.init is None else _init_source(teacher, spec.init, base_dir)
        n = int(source.model.config.num_hidden_layers)
        keep = spec.keep if spec.keep is not None else spread_layers(n, spec.layers)
        model = student_from_layers(source, keep)
        label = f"{'teacher' if spec.init is None else spec.init} layers {keep}"
    return LoadedModel(model, teacher.tokenizer, label, None, teacher.task)


def _init_source(teacher: LoadedModel, spec: str, base_dir: Path) -> LoadedModel:
    """The model whose layers a student keeps instead of the teacher's (e.g. the teacher's
    pre-trained base before fine-tuning), checked against the teacher."""
    labels = None
    if teacher.task == "classification":
        labels = {int(k): str(v) for k, v in teacher.model.config.id2label.items()}
    source = load_local(spec, teacher.task, base_dir, labels=labels)
    check_compatible(teacher, source)
    return source


def parameter_count(model: Any) -> int:
    """Number of distinct parameters (a tied embedding and LM head count once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
