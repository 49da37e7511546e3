"""The embedded MiniLM encoder against a direct transformers computation (mean pooling)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

from whetstone.embeddings import default_encoder_path, embed  # noqa: E402


def test_embeddings_equal_mean_pooled_transformers_output() -> None:
    from transformers import AutoModel, AutoTokenizer

    texts = ["How do I export a notebook?", "Sync fails on Android", "Refund my plan"]
    path = str(default_encoder_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()

    got = embed(texts)
    assert got.shape == (3, 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert embed([]).shape == (0, 384)
