"""Loading a candidate for evaluation: any `load_model` spec, or a folder `quantize` wrote.

A dynamically quantized (int8) model is saved as a config, a tokenizer and an int8 state dict
that only the quantization step's loader reads back; it is wrapped in the same backend the
quantization step evaluates it with, so every candidate is evaluated by the pipeline itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from whetstone.models import LanguageModel, load_model


def quantized_folder(spec: str) -> Path | None:
    """The folder if `spec` is a model folder written by the quantization step."""
    try:
        from whetstone.optimize.quantize import META_FILE
    except ImportError:
        return None
    path = Path(spec).expanduser()
    return path if path.is_dir() and (path / META_FILE).is_file() else None


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def load_candidate(spec: str, **options: Any) -> LanguageModel:
    """The model behind a candidate spec (see the module docstring)."""
    folder = quantized_folder(spec)
    if folder is None:
        return load_model(spec, **options)
    from whetstone.optimize.distill_eval import backend
    from whetstone.optimize.distill_student import detect_task
    from whetstone.optimize.quantize import load_quantized

    task = detect_task(folder)
    model, tokenizer = load_quantized(folder, task)
    lm: LanguageModel = backend(model, tokenizer, task, f"{folder.name} (int8)", _digest(folder))
    return lm
