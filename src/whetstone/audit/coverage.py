"""Coverage gaps: eval items far from every training example, and topics rare in training.

Texts are embedded with the MiniLM sentence encoder (L2-normalized, so distance = 1 - cosine).
An eval item is far when its distance to the nearest training example is larger than the
``quantile`` (0.99) of the training examples' own distances to their nearest other training
example: farther than almost any training example is from the rest. Topics are k-means clusters
of eval and training texts together; a cluster is a gap when its share of the eval set is at
least ``min_ratio`` times its share of the training set and Fisher's exact test (one-sided,
Benjamini-Hochberg adjusted over clusters) says the excess is not chance.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from whetstone.audit.config import CoverageConfig
from whetstone.audit.loading import Record
from whetstone.audit.schema import CoverageSection, FarItem, Topic
from whetstone.audit.stats import length_stats
from whetstone.audit.text import preview, tokens
from whetstone.evaluate.statistics import benjamini_hochberg

#: Texts per cached embedding block.
EMBED_BLOCK = 2048
#: Rows of the similarity matrix computed at once.
SIM_ROWS = 1024
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "in",
        "is",
        "it",
        "its",
        "my",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "you",
        "your",
        "we",
        "our",
        "they",
        "he",
        "she",
        "his",
        "her",
        "not",
        "do",
        "does",
        "did",
        "can",
        "if",
        "so",
        "no",
        "me",
        "what",
        "when",
        "how",
        "why",
        "which",
        "who",
        "there",
        "their",
        "them",
        "been",
        "would",
        "could",
        "should",
        "about",
        "into",
        "than",
        "then",
        "just",
        "also",
        "more",
        "all",
        "any",
        "s",
        "t",
        "39",
        "quot",
    ]
)

Embedder = Callable[[list[str]], np.ndarray]
Progress = Callable[[int], None]


def cached_embed(
    texts: Sequence[str],
    embed: Embedder,
    cache_dir: Path | None,
    tag: str,
    advance: Progress | None = None,
) -> np.ndarray:
    """Embeddings of ``texts`` in blocks; with ``cache_dir``, each finished block is saved, so
    an interrupted run resumes from the first missing block."""
    parts: list[np.ndarray] = []
    for lo in range(0, len(texts), EMBED_BLOCK):
        block = list(texts[lo : lo + EMBED_BLOCK])
        path = None
        if cache_dir is not None:
            digest = hashlib.sha256("\0".join([tag, *block]).encode("utf-8")).hexdigest()[:20]
            path = cache_dir / f"emb-{digest}.npy"
            if path.exists():
                parts.append(np.load(path))
                if advance:
                    advance(len(block))
                continue
        vectors = np.asarray(embed(block), dtype=np.float32)
        if path is not None:
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        parts.append(vectors)
        if advance:
            advance(len(block))
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    return np.concatenate(parts)


def nearest(
    queries: np.ndarray, base: np.ndarray, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Index of and cosine distance to the nearest row of ``base`` for every query row."""
    idx = np.zeros(queries.shape[0], dtype=np.int64)
    dist = np.zeros(queries.shape[0], dtype=np.float64)
    for lo in range(0, queries.shape[0], SIM_ROWS):
        sims = queries[lo : lo + SIM_ROWS] @ base.T
        if exclude_self:
            rows = np.arange(sims.shape[0])
            sims[rows, rows + lo] = -np.inf
        best = sims.argmax(axis=1)
        idx[lo : lo + SIM_ROWS] = best
        dist[lo : lo + SIM_ROWS] = 1.0 - sims[np.arange(sims.shape[0]), best]
    return idx, np.clip(dist, 0.0, 2.0)


def sample_records(records: Sequence[Record], limit: int, seed: int) -> list[Record]:
    """At most ``limit`` non-empty records, a seeded random sample in their original order."""
    usable = [r for r in records if r.text.strip()]
    if len(usable) <= limit:
        return usable
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(usable), size=limit, replace=False))
    return [usable[i] for i in picked]


def coverage_section(
    eval_name: str,
    eval_records: Sequence[Record],
    train_records: Sequence[Record],
    cfg: CoverageConfig,
    *,
    embed: Embedder,
    encoder_name: str,
    seed: int = 0,
    cache_dir: Path | None = None,
    advance: Progress | None = None,
) -> CoverageSection | None:
    """Far eval items and topic gaps for one eval set (None without enough texts)."""
    train = sample_records(train_records, cfg.max_train, seed)
    evals = sample_records(eval_records, cfg.max_eval, seed)
    if len(train) < 2 or not evals:
        return None
    e_train = cached_embed([r.text for r in train], embed, cache_dir, encoder_name, advance)
    e_eval = cached_embed([r.text for r in evals], embed, cache_dir, encoder_name, advance)
    near_idx, eval_dist = nearest(e_eval, e_train)
    _idx, train_dist = nearest(e_train, e_train, exclude_self=True)
    threshold = float(np.quantile(train_dist, cfg.quantile))
    far = [
        FarItem(
            eval_id=evals[i].id,
            distance=round(float(eval_dist[i]), 5),
            nearest_train_id=train[int(near_idx[i])].id,
            preview=preview(evals[i].text),
        )
        for i in np.argsort(-eval_dist)
        if eval_dist[i] > threshold
    ]
    topics = gap_topics(e_eval, e_train, evals, train, cfg, seed)
    eval_stats, train_stats = length_stats(eval_dist), length_stats(train_dist)
    assert eval_stats is not None and train_stats is not None
    return CoverageSection(
        eval_name=eval_name,
        encoder=encoder_name,
        n_train=len(train),
        n_eval=len(evals),
        sampled_train=len(train) < sum(1 for r in train_records if r.text.strip()),
        threshold=round(threshold, 5),
        quantile=cfg.quantile,
        eval_distance=eval_stats,
        train_distance=train_stats,
        far_items=far,
        topics=topics,
    )


def n_clusters(n: int, configured: int | None) -> int:
    """The configured number of clusters, else sqrt(n) between 2 and 100: fine enough that a
    missing topic of a few percent of the eval set gets a cluster of its own."""
    if configured is not None:
        return max(2, min(configured, n - 1))
    return int(np.clip(round(np.sqrt(n)), 2, 100))


def gap_topics(
    e_eval: np.ndarray,
    e_train: np.ndarray,
    evals: Sequence[Record],
    train: Sequence[Record],
    cfg: CoverageConfig,
    seed: int,
) -> list[Topic]:
    """k-means clusters of eval and training texts, each tested for an eval excess."""
    from scipy.stats import fisher_exact
    from sklearn.cluster import KMeans

    both = np.concatenate([e_eval, e_train])
    k = n_clusters(both.shape[0], cfg.clusters)
    if both.shape[0] <= k:
        return []
    from threadpoolctl import threadpool_limits

    # small problems run several times faster on one thread than with OpenMP's start-up cost
    with threadpool_limits(1 if both.shape[0] < 5000 else None):
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(both)
    eval_lab, train_lab = labels[: len(evals)], labels[len(evals) :]
    n_e, n_t = len(evals), len(train)
    rows = []
    for c in range(k):
        a, b = int((eval_lab == c).sum()), int((train_lab == c).sum())
        p = float(fisher_exact([[a, n_e - a], [b, n_t - b]], alternative="greater").pvalue)
        rows.append((c, a, b, p))
    q = benjamini_hochberg([r[3] for r in rows])
    doc_words = [set(tokens(r.text)) - STOP_WORDS for r in [*evals, *train]]
    overall = Counter(w for words in doc_words for w in words)
    topics = []
    for (c, a, b, p), qv in zip(rows, q, strict=True):
        e_share, t_share = a / n_e, b / n_t
        ratio = e_share / t_share if b else float("inf")
        gap = bool(qv < cfg.alpha and ratio >= cfg.min_ratio and a >= cfg.min_eval_items)
        members = np.flatnonzero(labels == c)
        topics.append(
            Topic(
                cluster=c,
                terms=top_terms([doc_words[i] for i in members], overall, len(doc_words)),
                n_eval=a,
                n_train=b,
                eval_share=round(e_share, 6),
                train_share=round(t_share, 6),
                ratio=round(ratio, 4) if np.isfinite(ratio) else 1e9,
                p_value=p,
                q_value=float(qv),
                gap=gap,
                eval_ids=[evals[int(i)].id for i in np.flatnonzero(eval_lab == c)] if gap else [],
            )
        )
    topics.sort(key=lambda t: (not t.gap, -t.ratio))
    return topics


def top_terms(
    cluster_words: Sequence[set[str]], overall: Counter[str], n_all: int, n: int = 6
) -> list[str]:
    """Words most over-represented in a cluster: smoothed log-odds of a record containing the
    word inside the cluster vs overall, weighted by how often it occurs in the cluster."""
    inside = Counter(w for words in cluster_words for w in words)
    n_in = len(cluster_words)
    scores = {
        w: float(np.log((c + 0.5) / (n_in + 1)) - np.log((overall[w] + 0.5) / (n_all + 1)))
        for w, c in inside.items()
        if c >= max(2, 0.05 * n_in)
    }
    ranked = sorted(scores, key=lambda w: (-scores[w] * np.log1p(inside[w]), w))
    return ranked[:n]
