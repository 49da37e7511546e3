"""Coverage: nearest-neighbour distances against scikit-learn, far items and topic gaps on data
with a topic missing from training; embedding cache resumes."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from whetstone.audit.config import CoverageConfig
from whetstone.audit.coverage import cached_embed, coverage_section, nearest
from whetstone.audit.loading import Record

TOPICS = {
    "sync": "sync devices upload conflict offline copies laptop phone",
    "billing": "invoice refund charge card payment plan receipt",
    "login": "password login account locked reset code verification",
    "export": "export pdf markdown html print file format",
}


def bag_embed(texts: list[str]) -> np.ndarray:
    """A deterministic stand-in for the sentence encoder: L2-normalized hashed word counts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(n_features=256, alternate_sign=False, norm="l2")
    return vec.transform(texts).toarray().astype(np.float32)


def records(topics: list[str], n: int, seed: int, prefix: str) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        words = rng.choices(TOPICS[topic].split(), k=6) + rng.choices(["my", "the", "a"], k=2)
        out.append(Record(i, i + 1, f"{prefix}{i}", " ".join(words), topic))
    return out


def test_nearest_matches_sklearn() -> None:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    idx, dist = nearest(queries, base)
    nn = NearestNeighbors(n_neighbors=2, metric="cosine", algorithm="brute").fit(base)
    ref_d, ref_i = nn.kneighbors(queries, n_neighbors=1)
    np.testing.assert_array_equal(idx, ref_i[:, 0])
    np.testing.assert_allclose(dist, ref_d[:, 0], atol=1e-5)
    # leave-one-out within the base: the nearest other row
    idx2, dist2 = nearest(base, base, exclude_self=True)
    ref_d2, ref_i2 = nn.kneighbors(base, n_neighbors=2)
    np.testing.assert_array_equal(idx2, ref_i2[:, 1])
    np.testing.assert_allclose(dist2, ref_d2[:, 1], atol=1e-5)


def test_missing_topic_is_a_gap_and_its_items_are_far() -> None:
    train = records(["sync", "billing", "login"], 300, 0, "t")
    evals = records(["sync", "billing", "login", "export"], 120, 1, "e")
    cfg = CoverageConfig(clusters=4, quantile=0.99)
    section = coverage_section("dev", evals, train, cfg, embed=bag_embed, encoder_name="bag")
    assert section is not None
    export_ids = {r.id for r in evals if r.label == "export"}
    gaps = [t for t in section.topics if t.gap]
    assert len(gaps) == 1
    assert set(gaps[0].eval_ids) == export_ids
    assert {"export", "pdf", "markdown"} & set(gaps[0].terms)
    assert gaps[0].n_train == 0
    far = {f.eval_id for f in section.far_items}
    assert far and far <= export_ids
    # the threshold is the 0.99 quantile of training leave-one-out distances
    e = bag_embed([r.text for r in train])
    _i, loo = nearest(e, e, exclude_self=True)
    assert section.threshold == pytest.approx(np.quantile(loo, 0.99), abs=1e-4)


def test_no_gap_when_eval_matches_training() -> None:
    train = records(["sync", "billing", "login"], 300, 2, "t")
    evals = records(["sync", "billing", "login"], 90, 3, "e")
    section = coverage_section(
        "dev", evals, train, CoverageConfig(clusters=3), embed=bag_embed, encoder_name="bag"
    )
    assert section is not None
    assert not [t for t in section.topics if t.gap]


def test_embedding_cache_resumes(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(5000)]
    calls: list[int] = []

    def counting(batch: list[str]) -> np.ndarray:
        calls.append(len(batch))
        return bag_embed(batch)

    first = cached_embed(texts, counting, tmp_path, "bag")
    assert calls == [2048, 2048, 904]
    calls.clear()
    (sorted(tmp_path.glob("emb-*.npy"))[0]).unlink()  # as if the run died after two blocks
    again = cached_embed(texts, counting, tmp_path, "bag")
    assert calls == [2048] or calls == [904]
    np.testing.assert_array_equal(first, again)
