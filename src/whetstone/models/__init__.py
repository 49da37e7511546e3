"""Model backends behind one protocol, and `load_model` that picks one from a spec string."""

from __future__ import annotations

import os
from pathlib import Path

from whetstone.errors import ModelError
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenLogprob,
    TokenModel,
)

__all__ = [
    "GenerationRequest",
    "LanguageModel",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "RollingRequest",
    "RollingResult",
    "TokenLogprob",
    "TokenModel",
    "load_model",
]


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    max_length: int | None = None,
) -> LanguageModel:
    """A model from a spec.

    `default`, `fake[:SEED[:DELAY]]`, `openai:NAME` (with `base_url`), a .gguf file, a local
    folder or a hub id already in the local cache. A folder holding a
    `*ForSequenceClassification` model loads as a `SequenceClassifier`.
    """
    if spec == "default":
        from whetstone.models.gguf import DEFAULT_MODEL_NAME, default_model_dir
        from whetstone.models.hf import HFModel

        folder, digest = default_model_dir()
        return HFModel(
            folder,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            max_length=max_length,
            name=DEFAULT_MODEL_NAME,
            model_hash=digest[:16],
        )
    if spec == "fake" or spec.startswith("fake:"):
        from whetstone.models.fake import FakeModel

        _, seed, delay = [*spec.split(":"), "", ""][:3]
        try:
            return FakeModel(seed=int(seed or 0), delay=float(delay or 0))
        except ValueError as exc:
            raise ModelError(f"model '{spec}': expected fake[:SEED[:DELAY_SECONDS]]") from exc
    if spec.startswith("openai:"):
        from whetstone.models.openai_http import OpenAIModel

        if not base_url:
            raise ModelError(f"model '{spec}': an OpenAI-compatible model needs --base-url")
        return OpenAIModel(
            spec.removeprefix("openai:"),
            base_url=base_url,
            api_key=os.environ.get(api_key_env),
            batch_size=batch_size,
        )
    from whetstone.models.hf import HFModel

    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        from whetstone.models.gguf import convert_gguf, file_digest

        if not path.is_file():
            raise ModelError(f"model file '{spec}' does not exist")
        digest = file_digest(path)
        return HFModel(
            convert_gguf(path, digest),
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            max_length=max_length,
            name=path.name,
            model_hash=digest[:16],
        )
    if not path.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise ModelError(f"model path '{spec}' does not exist")
    from whetstone.models.classifier import SequenceClassifier, is_sequence_classifier

    if is_sequence_classifier(path):
        return SequenceClassifier(
            path, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length
        )
    return HFModel(spec, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length)
