"""Discovered categories: k by silhouette, c-TF-IDF names, planted groups recovered."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.metrics import adjusted_rand_score

from whetstone.diagnose.clusters import choose_kmeans, cluster_failures, ctfidf_terms, embed_unique
from whetstone.diagnose.schema import Observation

TOPICS = {
    "billing": "invoice refund charged payment card subscription price",
    "sync": "sync devices offline conflict laptop phone server",
    "export": "export pdf markdown images attachments file format",
}


def hashing_embed(texts: list[str] | tuple[str, ...]) -> np.ndarray:
    """A deterministic bag-of-words embedding (L2-normalized), for fast tests."""
    vec = HashingVectorizer(n_features=512, norm="l2", alternate_sign=False)
    return vec.transform(list(texts)).toarray().astype(np.float32)


def _failures(per_topic: int = 12) -> tuple[list[Observation], list[int]]:
    rng = np.random.default_rng(0)
    obs, truth = [], []
    for t, (name, vocab) in enumerate(TOPICS.items()):
        words = vocab.split()
        for i in range(per_topic):
            text = " ".join(rng.choice(words, 6)) + f" case {i}"
            obs.append(
                Observation(
                    uid=f"r:t:{name}{i}",
                    source="sample",
                    origin="r",
                    task="t",
                    kind="generation",
                    item_id=f"{name}{i}",
                    text=text,
                    prompt=text,
                    output="",
                    failed=True,
                )
            )
            truth.append(t)
    return obs, truth


def test_choose_kmeans_finds_the_blobs() -> None:
    x, y = make_blobs(n_samples=300, centers=4, cluster_std=0.6, random_state=0)
    choice = choose_kmeans(x, k_max=8, seed=0)
    assert choice.centres.shape[0] == 4 and choice.by == "silhouette"
    assert adjusted_rand_score(y, choice.labels) > 0.95


def test_choose_kmeans_without_structure_sizes_k() -> None:
    x = np.random.default_rng(0).normal(size=(200, 20))  # one blob: no clusters to find
    choice = choose_kmeans(x, k_max=12, seed=0)
    assert choice.by == "size" and choice.silhouette < 0.25
    assert choice.centres.shape[0] == 10  # sqrt(200 / 2)


def test_ctfidf_by_hand() -> None:
    """Two clusters: 'apple apple' + 'pear', and 'pear' + 'plum'. Weights computed by hand."""
    labels = np.array([0, 0, 1, 1])
    terms = ctfidf_terms(["apple apple", "pear", "pear", "plum"], labels, n_terms=3)
    # counts: c0 {apple: 2, pear: 1, "apple apple": 1}, c1 {pear: 1, plum: 1}; bigrams never
    # span two documents; the mean number of terms per class is (4 + 2) / 2 = 3
    # idf: apple log(1 + 2.5/2), pear log(1 + 2.5/2), plum log(1 + 2.5/1)
    w = {
        (0, "apple"): 2 / 4 * np.log1p(3 / 2),
        (0, "pear"): 1 / 4 * np.log1p(3 / 2),
        (1, "pear"): 1 / 2 * np.log1p(3 / 2),
        (1, "plum"): 1 / 2 * np.log1p(3 / 1),
    }
    assert terms[0][0] == "apple"  # "apple apple" (2/4 * log 4) shares its words, so is skipped
    assert w[(0, "apple")] > w[(0, "pear")] and "pear" in terms[0]
    assert terms[1][:2] == sorted(["pear", "plum"], key=lambda t: -w[(1, t)])
    assert terms[1][0] == "plum"  # rarer overall, so more distinctive


def test_planted_groups_are_recovered_and_named() -> None:
    obs, truth = _failures()
    vectors = embed_unique([o.text for o in obs], hashing_embed)
    clusters, search = cluster_failures(obs, vectors, k_max=6, min_cluster=5, seed=0)
    assert len(clusters) == 3 and search is not None and search.by == "silhouette"
    found = {uid: c.id for c in clusters for uid in c.members}
    assert adjusted_rand_score(truth, [found[o.uid] for o in obs]) == 1.0
    assert sum(c.count for c in clusters) == len(obs)
    assert sorted(c.count for c in clusters) == [12, 12, 12]
    assert all(c.share.ci_low <= c.share.value <= c.share.ci_high for c in clusters)


def test_too_few_failures_give_no_clusters() -> None:
    obs, _ = _failures(per_topic=2)
    assert cluster_failures(obs, hashing_embed([o.text for o in obs]), min_cluster=5) == ([], None)


def test_embed_unique_encodes_each_text_once() -> None:
    seen: list[str] = []

    def counting(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return hashing_embed(texts)

    out = embed_unique(["a b", "c d", "a b"], counting)
    assert seen == ["a b", "c d"]
    np.testing.assert_array_equal(out[0], out[2])


def _purity(truth: list[int], labels: np.ndarray) -> float:
    """Share of items in their cluster's most common true group."""
    total = 0
    for c in set(labels.tolist()):
        total += max(np.bincount(np.asarray(truth)[labels == c]))
    return total / len(truth)


@pytest.mark.slow
def test_minilm_clusters_real_headlines() -> None:
    """MiniLM on real AG News headlines of three topics: clusters follow the topics."""
    from tests.conftest import shared_data

    rows = [line.split("\t") for line in shared_data("agnews_dev.tsv").read_text().splitlines()]
    picked: dict[str, list[str]] = {"Sports": [], "Business": [], "Sci/Tech": []}
    for text, label in ((r[0], r[1].strip()) for r in rows if len(r) == 2):
        if label in picked and len(picked[label]) < 20:
            picked[label].append(text)
    obs, truth = [], []
    for t, texts in enumerate(picked.values()):
        for i, text in enumerate(texts):
            obs.append(
                Observation(
                    uid=f"r:ag:{t}-{i}",
                    source="sample",
                    origin="r",
                    task="ag",
                    kind="classification",
                    item_id=f"{t}-{i}",
                    text=text,
                    prompt=text,
                    failed=True,
                )
            )
            truth.append(t)
    vectors = embed_unique([o.text for o in obs])
    clusters, _ = cluster_failures(obs, vectors, k_max=6, min_cluster=5, seed=0)
    assert 2 <= len(clusters) <= 6
    found = {uid: c.id for c in clusters for uid in c.members}
    labels = np.array([found[o.uid] for o in obs])
    # the clusters follow the topics: purer than 99% of random assignments of the same sizes
    rng = np.random.default_rng(0)
    chance = [_purity(truth, rng.permutation(labels)) for _ in range(500)]
    assert _purity(truth, labels) > np.quantile(chance, 0.99)
    assert all(c.terms for c in clusters)
