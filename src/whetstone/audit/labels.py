"""Labels: distribution, imbalance remedies, train/eval shift, and likely label errors.

Label errors are found by confident learning (cleanlab's ``find_label_issues``) on out-of-fold
predicted probabilities of a simple classifier: logistic regression over TF-IDF word 1-2 grams
(fitted inside each fold, so no fold sees its own test texts) or over MiniLM embeddings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whetstone.audit.config import LabelIssuesConfig
from whetstone.audit.loading import Record
from whetstone.audit.schema import (
    ClassCount,
    LabelIssue,
    LabelIssueSection,
    LabelSection,
    LabelShift,
)
from whetstone.audit.text import preview
from whetstone.errors import missing_extra
from whetstone.evaluate.statistics import wilson_ci
from whetstone.records import MetricValue

#: Record ids kept per label (for findings that name a class's records).
IDS_PER_LABEL = 1000


def balanced_weights(counts: dict[str, int]) -> dict[str, float]:
    """n / (classes * count): sklearn's ``class_weight="balanced"``."""
    n, k = sum(counts.values()), len(counts)
    return {label: n / (k * c) for label, c in counts.items() if c}


@dataclass
class LabelCounter:
    """Streaming label counts, with the ids of the first records of each label."""

    counts: Counter[str] = field(default_factory=Counter)
    ids: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def add(self, records: Sequence[Record]) -> None:
        """Count a chunk."""
        for rec in records:
            if rec.label is None:
                if rec.text.strip():
                    self.missing.append(rec.id)
                continue
            self.counts[rec.label] += 1
            bucket = self.ids.setdefault(rec.label, [])
            if len(bucket) < IDS_PER_LABEL:
                bucket.append(rec.id)

    def section(self, column: str) -> LabelSection | None:
        """The label section, or None when no record has a label."""
        if not self.counts:
            return None
        n = sum(self.counts.values())
        weights = balanced_weights(dict(self.counts))
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        shares = np.array([c / n for _l, c in ordered])
        entropy = float(-(shares * np.log(shares)).sum())
        top = ordered[0][1]
        return LabelSection(
            column=column,
            n_labeled=n,
            n_missing=len(self.missing),
            classes=[
                ClassCount(label=lab, count=c, share=round(c / n, 6), weight=round(weights[lab], 6))
                for lab, c in ordered
            ],
            imbalance_ratio=round(top / ordered[-1][1], 4),
            normalized_entropy=round(entropy / math.log(len(ordered)), 6)
            if len(ordered) > 1
            else 1.0,
            class_weights={lab: round(w, 6) for lab, w in weights.items()},
            oversample_to={lab: top for lab, _c in ordered},
            variants=label_variants(list(self.counts)),
            missing_ids=self.missing,
        )


def label_variants(labels: Sequence[str]) -> list[list[str]]:
    """Groups of labels that differ only in case, spacing or punctuation (Billing, billing)."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        key = re.sub(r"[\W_]+", "", label.lower())
        groups.setdefault(key, []).append(label)
    return [sorted(g) for g in groups.values() if len(g) > 1]


#: Random tables drawn for the permutation p-value of the label-shift test.
SHIFT_PERMUTATIONS = 10000


def homogeneity_chi2(table: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of homogeneity of (..., 2, k) tables: row 0 train, row 1 eval
    counts (classes no row has are skipped)."""
    t = np.asarray(table, dtype=float)
    cols = t.sum(axis=-2, keepdims=True)
    rows = t.sum(axis=-1, keepdims=True)
    expected = rows * cols / t.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cells = np.where(expected > 0, (t - expected) ** 2 / expected, 0.0)
    return np.asarray(cells.sum(axis=(-2, -1)))


def shift_test(
    train: np.ndarray, evals: np.ndarray, *, n_perm: int = SHIFT_PERMUTATIONS, seed: int = 0
) -> tuple[float, float]:
    """Chi-square of homogeneity of train vs eval class counts and its permutation p-value.

    Under the null both sets are draws from one label distribution, so given the pooled
    counts the eval counts are multivariate hypergeometric: tables drawn from it give the
    statistic's null distribution, p = (1 + #{chi2* >= chi2}) / (n_perm + 1). Unlike a
    goodness-of-fit test against the training shares (as if known exactly), it accounts for
    the training set's own sampling: with 100 training and 40 eval records the
    goodness-of-fit test rejected 18% of true nulls at 0.05; and it needs no large expected
    counts.
    """
    train, evals = np.asarray(train, dtype=np.int64), np.asarray(evals, dtype=np.int64)
    observed = float(homogeneity_chi2(np.stack([train, evals]))[()])
    pooled = train + evals
    if int(evals.sum()) == 0 or np.count_nonzero(pooled) < 2:
        return observed, 1.0
    rng = np.random.default_rng(seed)
    drawn = rng.multivariate_hypergeometric(pooled, int(evals.sum()), size=n_perm)
    null = homogeneity_chi2(np.stack([pooled[None, :] - drawn, drawn], axis=1))
    hits = int(np.sum(null >= observed - 1e-9 * max(1.0, observed)))
    return observed, (hits + 1) / (n_perm + 1)


def label_shift(
    train: LabelSection, eval_name: str, eval_labels: Sequence[str | None], seed: int = 0
) -> LabelShift | None:
    """Total variation distance and a permutation chi-square test of homogeneity of the eval
    against the training label counts (labels unseen in training are listed, not tested)."""
    counts = Counter(lab for lab in eval_labels if lab is not None)
    if not counts:
        return None
    train_count = {c.label: c.count for c in train.classes}
    train_share = {lab: c / train.n_labeled for lab, c in train_count.items()}
    unseen = sorted(lab for lab in counts if lab not in train_share)
    labels = sorted(train_share)
    observed = np.array([counts.get(lab, 0) for lab in labels])
    chi2, p = shift_test(np.array([train_count[lab] for lab in labels]), observed, seed=seed)
    n_eval = sum(counts.values())
    eval_share = {lab: counts[lab] / n_eval for lab in sorted(counts)}
    tvd = 0.5 * sum(
        abs(eval_share.get(lab, 0.0) - train_share.get(lab, 0.0))
        for lab in set(eval_share) | set(train_share)
    )
    return LabelShift(
        eval_name=eval_name,
        n_eval=n_eval,
        tvd=round(float(tvd), 6),
        chi2=round(float(chi2), 4),
        p_value=float(p),
        eval_shares={k: round(v, 6) for k, v in eval_share.items()},
        unseen_labels=unseen,
    )


# --------------------------------------------------------------------------- label issues


def oof_probabilities(
    texts: Sequence[str],
    y: np.ndarray,
    cfg: LabelIssuesConfig,
    seed: int,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Out-of-fold class probabilities ``[n, classes]`` from stratified k-fold logistic
    regression (TF-IDF fitted per fold, or the given feature matrix)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    folds = min(cfg.folds, int(np.bincount(y).min()))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # saga: an order of magnitude faster than lbfgs on sparse TF-IDF, same (convex) solution
    clf = LogisticRegression(C=cfg.C, max_iter=1000, solver="saga", tol=1e-3, random_state=seed)
    model: Any
    data: Any
    if features is None:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        model, data = make_pipeline(vectorizer, clf), list(texts)
    else:
        model, data = clf, features
    probs = cross_val_predict(model, data, y, cv=cv, method="predict_proba")
    return np.asarray(probs, dtype=float)


def issues_from_probabilities(
    y: np.ndarray, probs: np.ndarray, filter_by: str
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's label issue mask and label quality scores (self-confidence)."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as err:
        raise missing_extra("cleanlab", "diagnose") from err
    # n_jobs=1: its process pool costs seconds and buys nothing at this size
    mask = find_label_issues(labels=y, pred_probs=probs, filter_by=filter_by, n_jobs=1)
    quality = get_label_quality_scores(labels=y, pred_probs=probs, method="self_confidence")
    return np.asarray(mask, dtype=bool), np.asarray(quality, dtype=float)


def find_label_issues(
    records: Sequence[Record],
    cfg: LabelIssuesConfig,
    *,
    seed: int = 0,
    sampled: bool = False,
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> tuple[LabelIssueSection | None, str | None]:
    """The label issue section, or None with the reason the check could not run."""
    labeled = [r for r in records if r.label is not None and r.text.strip()]
    counts: Counter[str] = Counter(r.label for r in labeled if r.label is not None)
    kept = sorted(lab for lab, c in counts.items() if c >= cfg.min_class_count)
    skipped = sorted(lab for lab in counts if lab not in kept)
    labeled = [r for r in labeled if r.label in kept]
    if len(kept) < 2:
        return None, "label issues need at least two classes with enough records"
    if len(labeled) < cfg.min_records:
        return None, f"label issues need at least {cfg.min_records} labeled records"
    index = {lab: i for i, lab in enumerate(kept)}
    y = np.array([index[r.label or ""] for r in labeled])
    texts = [r.text for r in labeled]
    features = None
    kind = cfg.features
    if kind == "auto":
        kind = "embeddings" if len(labeled) < cfg.embed_below and embed is not None else "tfidf"
    if kind == "embeddings":
        if embed is None:
            raise ValueError("features 'embeddings' needs an embed function")
        features = embed(texts)
    probs = oof_probabilities(texts, y, cfg, seed, features)
    mask, quality = issues_from_probabilities(y, probs, cfg.filter_by)
    predicted = probs.argmax(axis=1)
    correct = int((predicted == y).sum())
    low, high = wilson_ci(correct, len(y))
    order = sorted(np.flatnonzero(mask).tolist(), key=lambda i: quality[i])
    issues = [
        LabelIssue(
            id=labeled[i].id,
            given=kept[y[i]],
            suggested=kept[predicted[i]]
            if predicted[i] != y[i]
            else _runner_up(probs[i], y[i], kept),
            quality=round(float(quality[i]), 6),
            preview=preview(labeled[i].text),
        )
        for i in order
    ]
    section = LabelIssueSection(
        features=kind,
        folds=min(cfg.folds, int(np.bincount(y).min())),
        n_records=len(y),
        sampled=sampled,
        classes=kept,
        oof_accuracy=MetricValue(
            value=correct / len(y), ci_low=low, ci_high=high, n=len(y), method="wilson"
        ),
        majority_baseline=max(counts[lab] for lab in kept) / len(y),
        n_issues=len(issues),
        issues=issues,
        per_class=dict(Counter(issue.given for issue in issues)),
        skipped_classes=skipped,
    )
    return section, None


def _runner_up(row: np.ndarray, given: int, classes: list[str]) -> str:
    """The most probable class other than the given one."""
    masked = row.copy()
    masked[given] = -1.0
    return classes[int(masked.argmax())]
