"""The model backends: one registry of factories, and `load_model` that picks one from a spec.

A spec is ``SCHEME:REST`` for a registered scheme (``fake:3``, ``openai:NAME``, ``hf:org/name``),
a bare registered name (``default``, ``fake``), a ``.gguf`` file, a folder written by
``whetstone quantize`` (``int8``), or else a transformers folder or cached hub id (``hf``).
An outside package adds a scheme through the entry-point group ``whetstone.backends``: a
factory ``(rest: str, options: ModelOptions) -> LanguageModel``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from whetstone.errors import ModelError
from whetstone.models.base import LanguageModel
from whetstone.registry import Registry

QUANTIZED_META = "quantization.json"
"""The file that marks a folder written by the quantization step."""
SCHEME = re.compile(r"[a-z][a-z0-9_-]*")
"""What may come before the colon of ``SCHEME:REST`` (hub ids and paths have no such part)."""


@dataclass(frozen=True)
class ModelOptions:
    """How to load a model: device, dtype, batch and length limits, server URL and key."""

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_length: int | None = None


BackendFactory = Callable[[str, ModelOptions], LanguageModel]
"""A backend: the spec's part after ``SCHEME:`` (the whole spec for path backends) and the
options give the loaded model."""

BACKENDS: Registry[BackendFactory] = Registry("backends", noun="model backend")
"""Every model backend by scheme; metadata ``help`` says what the spec names."""


def register_backend(name: str, factory: BackendFactory | str, *, help: str) -> None:
    """Add a backend under the scheme ``name`` (a factory or a lazy "module:attr")."""
    BACKENDS.register(name, factory, help=help)


def resolve(spec: str) -> tuple[str, str]:
    """The backend name and the argument it gets for ``spec``."""
    scheme, sep, rest = spec.partition(":")
    if sep and SCHEME.fullmatch(scheme) and not Path(spec).expanduser().exists():
        return BACKENDS.canonical(scheme), rest  # an unknown scheme: did-you-mean
    if not sep and spec in BACKENDS and not Path(spec).exists():
        return BACKENDS.canonical(spec), ""
    if spec.endswith(".gguf"):
        return "gguf", spec
    if quantized_folder(spec) is not None:
        return "int8", spec
    return "hf", spec


def quantized_folder(spec: str) -> Path | None:
    """The folder if ``spec`` names one written by the quantization step."""
    path = Path(spec).expanduser()
    return path if (path / QUANTIZED_META).is_file() else None


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
    """The model a spec names (see the module docstring for the forms a spec takes)."""
    options = ModelOptions(device, dtype, batch_size, base_url, api_key_env, max_length)
    name, rest = resolve(spec)
    return BACKENDS.get(name)(rest, options)


def _converted(folder: Path, o: ModelOptions, name: str, digest: str) -> LanguageModel:
    """A transformers model converted from a GGUF file, identified by the file's digest."""
    from whetstone.models.hf import HFModel

    return HFModel(
        folder,
        device=o.device,
        dtype=o.dtype,
        batch_size=o.batch_size,
        max_length=o.max_length,
        name=name,
        model_hash=digest[:16],
    )


def _default(rest: str, o: ModelOptions) -> LanguageModel:
    from whetstone.models.gguf import DEFAULT_MODEL_NAME, default_model_dir

    folder, digest = default_model_dir()
    return _converted(folder, o, DEFAULT_MODEL_NAME, digest)


def _fake(rest: str, o: ModelOptions) -> LanguageModel:
    from whetstone.models.fake import FakeModel

    seed, delay = [*rest.split(":"), "", ""][:2] if rest else ("", "")
    try:
        return FakeModel(seed=int(seed or 0), delay=float(delay or 0))
    except ValueError as exc:
        raise ModelError(f"model 'fake:{rest}': expected fake[:SEED[:DELAY_SECONDS]]") from exc


def _openai(rest: str, o: ModelOptions) -> LanguageModel:
    from whetstone.models.openai_http import OpenAIModel

    if not o.base_url:
        raise ModelError(f"model 'openai:{rest}': an OpenAI-compatible model needs --base-url")
    return OpenAIModel(
        rest, base_url=o.base_url, api_key=os.environ.get(o.api_key_env), batch_size=o.batch_size
    )


def _gguf(spec: str, o: ModelOptions) -> LanguageModel:
    from whetstone.models.gguf import convert_gguf, file_digest

    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"model file '{spec}' does not exist")
    digest = file_digest(path)
    return _converted(convert_gguf(path, digest), o, path.name, digest)


def _hf(spec: str, o: ModelOptions) -> LanguageModel:
    """A transformers folder or cached hub id; a sequence classifier loads as one."""
    path = Path(spec).expanduser()
    if not path.exists() and (spec.startswith((".", "/", "~")) or spec.count("/") > 1):
        raise ModelError(f"model path '{spec}' does not exist")
    from whetstone.models.classifier import SequenceClassifier, is_sequence_classifier
    from whetstone.models.hf import HFModel

    if is_sequence_classifier(path):
        return SequenceClassifier(
            path, device=o.device, dtype=o.dtype, batch_size=o.batch_size, max_length=o.max_length
        )
    return HFModel(
        spec, device=o.device, dtype=o.dtype, batch_size=o.batch_size, max_length=o.max_length
    )


register_backend("default", _default, help="the embedded default model")
register_backend("fake", _fake, help="fake[:SEED[:DELAY]]: a seeded byte bigram model for tests")
register_backend("openai", _openai, help="openai:NAME: a model behind an OpenAI-compatible server")
register_backend("gguf", _gguf, help="a .gguf file, dequantized into transformers")
register_backend("hf", _hf, help="a transformers folder or a hub id in the local cache")
register_backend(
    "int8",
    "whetstone.optimize.quantize:load_backend",
    help="a folder written by whetstone quantize (dynamic int8)",
)
