"""Recognizing a folder that the quantization step wrote (the ``int8`` model backend)."""

from __future__ import annotations

from pathlib import Path

from whetstone.models.backends import QUANTIZED_META


def quantized_folder(spec: str) -> Path | None:
    """The folder if `spec` is a model folder written by the quantization step."""
    path = Path(spec).expanduser()
    return path if path.is_dir() and (path / QUANTIZED_META).is_file() else None
