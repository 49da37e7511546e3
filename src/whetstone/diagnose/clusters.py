"""Discovered categories: failures grouped by MiniLM embeddings and named by distinctive terms.

The number of clusters is chosen by the silhouette score of k-means (scikit-learn) over a range
of k; each cluster is named by its class-based TF-IDF terms (as BERTopic's c-TF-IDF: term
frequency within the cluster, L1-normalized, times log(1 + mean words per cluster / the term's
frequency over all clusters)), and shown by the failures nearest to its centre.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from whetstone.diagnose.categories import example_of, share_of
from whetstone.diagnose.schema import ClusterResult, ClusterSearch, Observation

__all__ = [
    "KMeansChoice",
    "choose_kmeans",
    "cluster_failures",
    "ctfidf_terms",
    "embed_unique",
    "failure_text",
]

TEXT_CHARS = 1000
SMALL = 5000  # k-means on fewer points than this runs on one thread
CLEAR_STRUCTURE = 0.25  # silhouette above which k-means' k follows the silhouette
# HTML entity names left in scraped text (AG News: "&lt;b&gt;", " #39;") name nothing
_NOISE_TERMS = frozenset(
    {"quot", "amp", "lt", "gt", "nbsp", "apos", "href", "http", "https", "www"}
)


def embed_unique(
    texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray] | None = None
) -> np.ndarray:
    """Embeddings of texts, each distinct text encoded once (cut to a thousand characters)."""
    if embed is None:
        from whetstone.embeddings import embed as default_embed

        embed = default_embed
    cut = [t[:TEXT_CHARS] for t in texts]
    unique = list(dict.fromkeys(cut))
    index = {t: i for i, t in enumerate(unique)}
    vectors = embed(unique)
    return np.asarray(vectors, dtype=np.float32)[[index[t] for t in cut]]


def failure_text(o: Observation) -> str:
    """What a failure is clustered on: the item's text, the answer when written, the comment."""
    parts = [o.text or o.prompt]
    if o.generated and o.output.strip():
        parts.append(o.output)
    if o.comment:
        parts.append(o.comment)
    return "\n".join(p[: TEXT_CHARS // len(parts)] for p in parts)


@dataclass(frozen=True)
class KMeansChoice:
    """A k-means clustering and how its k was chosen."""

    labels: np.ndarray
    centres: np.ndarray
    silhouette: float
    by: str  # "silhouette" or "size"


def choose_kmeans(x: np.ndarray, k_max: int, seed: int = 0, sample: int = 2000) -> KMeansChoice:
    """k-means with k in 2..k_max chosen by the silhouette score when the data has a clear
    structure (best silhouette >= 0.25, Kaufman and Rousseeuw's bound for a real one);
    otherwise, as a reading aid, k = sqrt(n / 2) capped at k_max."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    n = x.shape[0]
    fits: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    # small problems run several times faster on one thread than with OpenMP's start-up cost
    with threadpool_limits(1 if n < SMALL else None):
        for k in range(2, max(2, min(k_max, n - 1)) + 1):
            model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
            if len(set(model.labels_)) < 2:
                continue
            score = float(
                silhouette_score(x, model.labels_, sample_size=min(n, sample), random_state=seed)
            )
            fits[k] = (score, model.labels_.copy(), model.cluster_centers_.copy())
    if not fits:
        return KMeansChoice(np.zeros(n, dtype=int), x.mean(axis=0, keepdims=True), 0.0, "size")
    best = max(fits, key=lambda k: (fits[k][0], -k))
    if fits[best][0] >= CLEAR_STRUCTURE:
        return KMeansChoice(fits[best][1], fits[best][2], fits[best][0], "silhouette")
    k = min(max(fits), max(2, round(math.sqrt(n / 2))))
    k = min(fits, key=lambda j: abs(j - k))
    return KMeansChoice(fits[k][1], fits[k][2], fits[k][0], "size")


def ctfidf_terms(texts: Sequence[str], labels: np.ndarray, n_terms: int = 5) -> list[list[str]]:
    """The most distinctive terms of each cluster (index = label) by class-based TF-IDF."""
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    k = int(labels.max()) + 1 if len(labels) else 0
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    vectorizer = CountVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | _NOISE_TERMS),
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b",
    )
    try:
        per_doc = vectorizer.fit_transform(list(texts))
    except ValueError:  # no terms at all (empty or stop words only)
        return [[] for _ in range(k)]
    membership = sparse.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    )
    counts = np.asarray((membership @ per_doc).todense(), dtype=float)
    vocab = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    mean_words = counts.sum() / max(k, 1)
    idf = np.log1p(mean_words / np.maximum(counts.sum(axis=0), 1.0))
    weights = tf * idf
    terms = []
    for c in range(k):
        order = np.argsort(-weights[c], kind="stable")
        chosen: list[str] = []
        for j in order:
            if weights[c, j] <= 0 or len(chosen) == n_terms:
                break
            term = str(vocab[j])
            # a bigram whose words are already shown says nothing new
            if not any(term in t or t in term for t in chosen):
                chosen.append(term)
        terms.append(chosen)
    return terms


def cluster_failures(
    failures: Sequence[Observation],
    vectors: np.ndarray,
    categories: dict[str, list[str]] | None = None,
    *,
    k_max: int = 12,
    min_cluster: int = 5,
    seed: int = 0,
    examples: int = 3,
) -> tuple[list[ClusterResult], ClusterSearch | None]:
    """Discovered categories of failures, largest first, and how k was chosen (nothing when
    there are fewer than two clusters' worth of failures)."""
    n = len(failures)
    k_max = min(k_max, n // max(min_cluster, 1))
    if k_max < 2:
        return [], None
    choice = choose_kmeans(vectors, k_max, seed)
    labels, centres = choice.labels, choice.centres
    texts = [failure_text(o) for o in failures]
    terms = ctfidf_terms(texts, labels)
    results = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        centre = centres[c] / (np.linalg.norm(centres[c]) or 1.0)
        nearest = members[np.argsort(-(vectors[members] @ centre), kind="stable")[:examples]]
        cats: Counter[str] = Counter()
        for i in members:
            cats.update((categories or {}).get(failures[int(i)].uid, []))
        results.append(
            ClusterResult(
                id=c,
                name=" / ".join(terms[c][:3]) or f"cluster {c}",
                terms=terms[c],
                count=int(members.size),
                share=share_of({failures[int(i)].uid for i in members}, failures),
                examples=[example_of(failures[int(i)]) for i in nearest],
                top_tasks=dict(Counter(failures[int(i)].task for i in members).most_common(5)),
                top_categories=dict(cats.most_common(5)),
                members=[failures[int(i)].uid for i in members],
            )
        )
    results.sort(key=lambda r: (-r.count, r.id))
    search = ClusterSearch(k=len(results), by=choice.by, silhouette=choice.silhouette)
    return results, search
