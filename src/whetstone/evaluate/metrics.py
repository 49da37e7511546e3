"""Aggregate per-item results into metrics with 95% intervals (``MetricValue``) per task kind.

Conventions shared by every function here:

* No items raises ``ValueError``.
* Intervals are 95%, and each MetricValue names its method. Wilson intervals (0/1 means) are
  reported for any n >= 1. Bootstrap intervals (BCa with tails expanded for small n, or
  studentized for corpus ratios) need at least ``MIN_BOOTSTRAP_N`` items with some spread;
  below that the ends are None, ``too_few`` is set and ``note`` says why: a point interval
  would claim false certainty.
* Bootstrap intervals resample items and are deterministic given ``seed``.
* docs/statistics.md gives each method with its measured coverage.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.metrics.base import Metric
from scipy.stats import beta

from whetstone.evaluate.statistics import (
    bca_interval,
    bootstrap_ci,
    bootstrap_distribution,
    mover_interval,
    ratio_bootstrap_ci,
    resample_counts,
    wilson_ci,
)
from whetstone.metrics import MetricSpec, apply_transform, ratio_metrics
from whetstone.records import MetricValue

__all__ = [
    "classification_metrics",
    "count_bytes",
    "count_words",
    "exact_match",
    "expected_calibration_error",
    "generation_metrics",
    "mean_metric",
    "multiple_choice_metrics",
    "normalize_answer",
    "perplexity_metrics",
    "rouge_l",
    "token_f1",
]

N_BOOT = 1000
CORPUS_N_BOOT = 1000
ECE_BINS = 10
#: Fewest items (with some spread) for a bootstrap interval; fewer are flagged too_few.
MIN_BOOTSTRAP_N = 10
#: Fewest documents for the studentized interval of a corpus ratio (perplexity, bits per byte).
MIN_RATIO_N = 5
_PROB_SUM_TOL = 1e-4
# Leave-one-group-out jackknife of corpus statistics uses at most this many groups.
_JACKKNIFE_GROUPS = 200

ChunkFunction = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- shared helpers


def _require_items(n: int, what: str) -> None:
    """Refuse to aggregate zero items."""
    if n == 0:
        raise ValueError(f"{what}: no items to aggregate (n = 0)")


def _same_length(what: str, **columns: Sequence[Any]) -> int:
    """The common length of several per-item columns; refuses mismatches and n = 0."""
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{what}: per-item inputs differ in length: {lengths}")
    n = next(iter(lengths.values()))
    _require_items(n, what)
    return n


def too_few(value: float, n: int, note: str, method: str = "") -> MetricValue:
    """A MetricValue without an interval, flagged: the sample cannot support an honest one."""
    return MetricValue(value=value, n=n, method=method, too_few=True, note=note)


def _interval(value: float, n: int, low: float, high: float, method: str) -> MetricValue:
    """A MetricValue with its interval; one that collapsed to a point is flagged instead."""
    if not (np.isfinite(low) and np.isfinite(high)) or high - low <= 1e-12 * max(1.0, abs(value)):
        return too_few(value, n, f"no spread across {n} items: no honest interval", method)
    return MetricValue(value=value, ci_low=float(low), ci_high=float(high), n=n, method=method)


def _few_items_note(n: int, least: int = MIN_BOOTSTRAP_N) -> str:
    """The note of a metric computed from fewer items than its interval needs."""
    return f"{n} item(s): a bootstrap interval needs at least {least}"


def _bootstrapped(
    value: float,
    n: int,
    chunk_fn: ChunkFunction,
    leave_one_out: np.ndarray,
    *,
    seed: int,
    n_boot: int,
) -> MetricValue:
    """A MetricValue with the BCa interval of chunk_fn's replicates (too_few for small n)."""
    if n < MIN_BOOTSTRAP_N:
        return too_few(value, n, _few_items_note(n), "bca")
    dist = bootstrap_distribution(n, chunk_fn, n_boot=n_boot, seed=seed)
    low, high = bca_interval(value, dist, leave_one_out, n)
    return _interval(value, n, float(low), float(high), "bca")


def mean_metric(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    binary: bool = False,
    n_boot: int = N_BOOT,
) -> MetricValue:
    """Mean of per-item values: Wilson interval when binary (0/1), bootstrap otherwise."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"mean_metric needs a 1-D sequence, got shape {arr.shape}")
    _require_items(arr.size, "mean_metric")
    if not np.all(np.isfinite(arr)):
        raise ValueError("mean_metric: values contain NaN or infinity")
    value, n = float(arr.mean()), int(arr.size)
    if binary:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("mean_metric: binary=True needs values that are all 0 or 1")
        low, high = wilson_ci(int(arr.sum()), n)
        return MetricValue(value=value, ci_low=low, ci_high=high, n=n, method="wilson")
    if n < MIN_BOOTSTRAP_N:
        return too_few(value, n, _few_items_note(n), "bca")
    low, high = bootstrap_ci(arr, np.mean, n_boot=n_boot, seed=seed)
    return _interval(value, n, low, high, "bca")


def _ece_bins(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each confidence: bin b holds (b/n_bins, (b+1)/n_bins]; 0 goes to bin 0."""
    edges = np.arange(1, n_bins) / n_bins
    return np.digitize(confidence, edges, right=True)


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[float] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> float:
    """ECE: sum over equal-width bins of (bin size / n) * |accuracy(bin) - mean confidence(bin)|."""
    conf = np.asarray(confidence, dtype=float)
    gap = np.asarray(correct, dtype=float) - conf
    _require_items(conf.size, "expected_calibration_error")
    per_bin = np.bincount(_ece_bins(conf, n_bins), weights=gap, minlength=n_bins)
    return float(np.abs(per_bin).sum() / conf.size)


def _ece_parts(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: item count, correct count, mean confidence, mean c(1 - c)."""
    bins = _ece_bins(confidence, n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(float)
    hits = np.bincount(bins, weights=correct, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins)
    spread = np.bincount(bins, weights=confidence * (1 - confidence), minlength=n_bins)
    keep = counts > 0
    return counts[keep], hits[keep], conf[keep] / counts[keep], spread[keep] / counts[keep]


def debiased_ece(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[float] | np.ndarray,
    n_bins: int = ECE_BINS,
) -> float:
    """ECE with the sampling noise of each bin's gap taken out (0 for a calibrated model).

    The plug-in |accuracy - confidence| of a bin is inflated by noise: E[gap^2] = true^2 + s^2
    with s^2 the variance of the bin's accuracy, estimated without bias by acc(1 - acc) /
    (n_b - 1) (c(1 - c) for a bin of one item). Each bin contributes sqrt(max(gap^2 - s^2, 0))
    (the debiased squared gap of Kumar et al., 2019, back on the L1 scale). A calibrated model
    scores near 0 instead of about 0.05 at 200 items; a large gap is left almost unchanged.
    """
    conf = np.asarray(confidence, dtype=float)
    _require_items(conf.size, "debiased_ece")
    counts, hits, mean_conf, spread = _ece_parts(conf, np.asarray(correct, dtype=float), n_bins)
    acc = hits / counts
    noise = np.where(
        counts > 1, acc * (1 - acc) / np.maximum(counts - 1, 1), spread / np.maximum(counts, 1)
    )
    per_bin = np.sqrt(np.maximum((acc - mean_conf) ** 2 - noise, 0.0))
    return float(counts @ per_bin / conf.size)


def _ece_interval(
    confidence: np.ndarray, correct: np.ndarray, confidence_level: float = 0.95
) -> tuple[float, float]:
    """The ECE interval as the image of simultaneous per-bin intervals (it can reach 0).

    Each non-empty bin's accuracy gets a Clopper-Pearson interval at level 1 - alpha / bins
    (Bonferroni; exact, since Wilson dips below its level near 0 and 1 where confident bins
    sit), shifted by the bin's mean confidence; the ECE is bounded below by the smallest |gap| each
    bin allows (0 where the interval contains 0) and above by the largest. The truth is the
    binned calibration error given the confidences, so a calibrated model is covered.
    """
    counts, hits, mean_conf, _ = _ece_parts(confidence, correct)
    level = 1 - (1 - confidence_level) / counts.size
    tail = (1 - level) / 2
    lo = np.where(hits > 0, beta.ppf(tail, hits, counts - hits + 1), 0.0) - mean_conf
    hi = np.where(hits < counts, beta.ppf(1 - tail, hits + 1, counts - hits), 1.0) - mean_conf
    least = np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(np.abs(lo), np.abs(hi)))
    most = np.maximum(np.abs(lo), np.abs(hi))
    n = confidence.size
    return float(counts @ least / n), float(counts @ most / n)


def _ece_metrics(confidence: np.ndarray, correct: np.ndarray) -> dict[str, MetricValue]:
    """ece (the plug-in value) and ece_debiased, both with the per-bin projection interval."""
    n = confidence.size
    low, high = _ece_interval(confidence, correct)
    values = {
        "ece": expected_calibration_error(confidence, correct),
        "ece_debiased": debiased_ece(confidence, correct),
    }
    return {
        name: MetricValue(value=v, ci_low=low, ci_high=high, n=n, method="ece_projection")
        for name, v in values.items()
    }


# --------------------------------------------------------------------------- multiple choice


def _pad(rows: Sequence[Sequence[float]], fill: float) -> np.ndarray:
    """A (n, max_len) float matrix of ragged rows, padded with ``fill``."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill, dtype=float)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _softmax_rows(lls: np.ndarray) -> np.ndarray:
    """Row-wise softmax; -inf entries (padding) get probability 0."""
    shifted = np.exp(lls - lls.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check_choices(
    loglikelihoods: Sequence[Sequence[float]], lengths: Sequence[Sequence[int]], gold: Sequence[int]
) -> None:
    """Refuse ragged mismatches, empty choice lists, bad lengths, NaN/+inf and gold off range."""
    for i, (lls, lens, g) in enumerate(zip(loglikelihoods, lengths, gold, strict=True)):
        if len(lls) == 0 or len(lls) != len(lens):
            raise ValueError(f"item {i}: {len(lls)} log-likelihoods for {len(lens)} choice lengths")
        if not 0 <= g < len(lls):
            raise ValueError(f"item {i}: gold index {g} is not among {len(lls)} choices")
        if min(lens) < 1:
            raise ValueError(f"item {i}: choice lengths must be >= 1 character")
        arr = np.asarray(lls, dtype=float)
        if np.any(np.isnan(arr)) or np.any(arr == np.inf) or not np.any(np.isfinite(arr)):
            raise ValueError(f"item {i}: log-likelihoods must be finite or -inf (not all -inf)")


def multiple_choice_metrics(
    loglikelihoods: list[list[float]],
    choice_lengths: list[list[int]],
    gold: list[int],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> tuple[dict[str, MetricValue], list[dict[str, float]]]:
    """acc, acc_norm, brier and ece for multiple choice, as lm-evaluation-harness defines them.

    acc: argmax of the log-likelihoods equals gold. acc_norm: argmax of loglik divided by the
    choice's length in characters (lm-evaluation-harness uses ``len(choice)`` of the choice text
    without the target delimiter). Ties go to the first choice (``np.argmax``). brier: mean over
    items of sum_j (softmax(lls)_j - onehot(gold)_j)^2. ece: 10 equal-width bins of the top
    choice's softmax probability. Items may have different numbers of choices.
    Returns the aggregates and, per item, acc, acc_norm, brier and confidence (top probability).
    """
    n = _same_length(
        "multiple_choice_metrics", loglikelihoods=loglikelihoods, lengths=choice_lengths, gold=gold
    )
    _check_choices(loglikelihoods, choice_lengths, gold)
    lls = _pad(loglikelihoods, -np.inf)
    lengths = _pad(choice_lengths, 1.0)
    g = np.asarray(gold, dtype=int)
    probs = _softmax_rows(lls)
    acc = (np.argmax(lls, axis=1) == g).astype(float)
    acc_norm = (np.argmax(lls / lengths, axis=1) == g).astype(float)
    onehot = np.eye(lls.shape[1])[g]
    brier = ((probs - onehot) ** 2).sum(axis=1)
    confidence = probs.max(axis=1)
    aggregates = {
        "acc": mean_metric(acc, binary=True),
        "acc_norm": mean_metric(acc_norm, binary=True),
        "brier": mean_metric(brier, seed=seed, n_boot=n_boot),
        **_ece_metrics(confidence, acc),
    }
    per_item = [
        {
            "acc": float(acc[i]),
            "acc_norm": float(acc_norm[i]),
            "brier": float(brier[i]),
            "confidence": float(confidence[i]),
        }
        for i in range(n)
    ]
    return aggregates, per_item


# --------------------------------------------------------------------------- classification

_CLASSIFICATION_NAMES = (
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def _per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class tp, predicted, support, precision, recall, f1 from (rows, K, K+1) counts.

    Column K holds predictions outside the label set: a false negative for the gold class and
    a false positive for no class (as sklearn with ``labels=`` given).
    """
    k = counts.shape[1]
    tp = np.diagonal(counts[:, :, :k], axis1=1, axis2=2).astype(float)
    predicted = counts[:, :, :k].sum(axis=1).astype(float)
    support = counts.sum(axis=2).astype(float)
    return {
        "tp": tp,
        "predicted": predicted,
        "support": support,
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        "f1": _safe_div(2 * tp, predicted + support),
    }


def _classification_scores(counts: np.ndarray) -> np.ndarray:
    """(rows, 9) matrix of the metrics in _CLASSIFICATION_NAMES, one row per confusion count."""
    pc = _per_class(counts)
    tp, predicted, support = (pc[key].sum(axis=1) for key in ("tp", "predicted", "support"))
    weights = _safe_div(pc["support"], support[:, None])
    columns = [pc[m].mean(axis=1) for m in ("precision", "recall", "f1")]
    columns += [_safe_div(tp, predicted), _safe_div(tp, support)]
    columns += [_safe_div(2 * tp, predicted + support)]
    columns += [(weights * pc[m]).sum(axis=1) for m in ("precision", "recall", "f1")]
    return np.stack(columns, axis=1)


def _confusion_counts(codes: np.ndarray, k: int) -> np.ndarray:
    """(rows, K, K+1) confusion counts of a (rows, n) matrix of gold * (K+1) + pred codes."""
    rows, cells = codes.shape[0], k * (k + 1)
    keys = codes + (np.arange(rows) * cells)[:, None]
    return np.bincount(keys.ravel(), minlength=rows * cells).reshape(rows, k, k + 1)


def _encode_labels(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes: gold must be in labels; a prediction outside labels gets code K."""
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError("labels must be a non-empty list of distinct strings")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({g for g in gold if g not in index})
    if unknown:
        raise ValueError(f"gold labels not in labels: {unknown[:5]}")
    g = np.array([index[x] for x in gold], dtype=int)
    p = np.array([index.get(x, len(labels)) for x in predicted], dtype=int)
    return g, p


def _probability_metrics(
    probs: np.ndarray | None, g: np.ndarray, k: int, *, seed: int, n_boot: int
) -> tuple[dict[str, MetricValue], dict[str, np.ndarray]]:
    """ece and brier from an (n, K) probability matrix (empty when probs is None).

    ece uses the top probability and whether its label (argmax, first on ties) is gold.
    """
    if probs is None:
        return {}, {}
    p = np.asarray(probs, dtype=float)
    if p.shape != (g.size, k):
        raise ValueError(f"probs must have shape (n, len(labels)); got {p.shape}")
    if not np.allclose(p.sum(axis=1), 1.0, atol=_PROB_SUM_TOL) or np.any(p < 0):
        raise ValueError("each row of probs must be non-negative and sum to 1")
    brier = ((p - np.eye(p.shape[1])[g]) ** 2).sum(axis=1)
    confidence = p.max(axis=1)
    top_correct = (np.argmax(p, axis=1) == g).astype(float)
    metrics = {
        **_ece_metrics(confidence, top_correct),
        "brier": mean_metric(brier, seed=seed, n_boot=n_boot),
    }
    return metrics, {"brier": brier, "confidence": confidence}


def classification_metrics(
    gold: list[str],
    predicted: list[str],
    labels: list[str],
    probs: np.ndarray | None = None,
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    positive: str | None = None,
) -> tuple[dict[str, MetricValue], dict[str, Any], list[dict[str, float]]]:
    """Accuracy and macro/micro/weighted precision, recall, F1 (+ ece, brier given probs).

    Averages are named: ``f1_macro`` is the unweighted mean over all ``labels`` (sklearn,
    zero_division=0). Given ``positive`` (one of ``labels``), ``precision_binary``,
    ``recall_binary`` and ``f1_binary`` are that class's own scores (sklearn's
    average="binary", what lm-evaluation-harness reports as f1). A prediction outside
    ``labels`` (e.g. a failed parse) is wrong for its gold class and counts as a prediction of
    no class, exactly as sklearn with ``labels=labels``; so precision_micro can exceed
    accuracy. Proportions get Wilson intervals; macro and weighted averages combine per-class
    Wilson intervals by MOVER.
    Returns aggregates, tables (``confusion_matrix`` with rows gold and columns predicted, its
    ``out_of_labels`` count per gold row, and ``per_class``) and per-item dicts.
    """
    n = _same_length("classification_metrics", gold=gold, predicted=predicted)
    g, p = _encode_labels(gold, predicted, labels)
    k = len(labels)
    codes = g * (k + 1) + p
    counts = _confusion_counts(codes[None, :], k)
    correct = (g == p).astype(float)
    if positive is not None and positive not in labels:
        raise ValueError(f"positive label {positive!r} is not one of the labels {list(labels)}")
    pos = None if positive is None else list(labels).index(positive)
    aggregates = {"accuracy": mean_metric(correct, binary=True)}
    aggregates.update(_confusion_metrics(codes, k, seed=seed, n_boot=n_boot, positive=pos))
    prob_metrics, prob_items = _probability_metrics(probs, g, k, seed=seed, n_boot=n_boot)
    aggregates.update(prob_metrics)
    tables = _classification_tables(counts[0], labels)
    per_item = [
        {"accuracy": float(correct[i]), **{key: float(v[i]) for key, v in prob_items.items()}}
        for i in range(n)
    ]
    return aggregates, tables, per_item


def _class_trials(counts: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per class, successes and trials whose ratio is the metric (F1 through Jaccard).

    precision_k = tp / predicted and recall_k = tp / support are proportions; F1_k is
    2J / (1 + J) of the Jaccard share J = tp / (support + predicted - tp), a proportion over
    the items that involve class k. Each is binomial given its trials, so Wilson applies.
    """
    pc = _per_class(counts[None])
    tp, predicted, support = (pc[key][0] for key in ("tp", "predicted", "support"))
    trials = {"precision": predicted, "recall": support, "f1": support + predicted - tp}[metric]
    return tp, trials


def _to_f1(jaccard: np.ndarray) -> np.ndarray:
    """F1 from the Jaccard share: 2J / (1 + J) (monotone, so interval ends map to ends)."""
    return 2 * jaccard / (1 + jaccard)


def _wilson_per_class(hits: np.ndarray, trials: np.ndarray, f1: bool) -> np.ndarray:
    """(K, 2) Wilson ends per class; a class without trials gets [0, 1]."""
    pairs = zip(hits, trials, strict=True)
    ends = np.array([wilson_ci(int(h), int(t)) if t > 0 else (0.0, 1.0) for h, t in pairs])
    return _to_f1(ends) if f1 else ends


def _class_correlation(codes: np.ndarray, k: int, metric: str, seed: int, n_boot: int) -> Any:
    """Correlation of the per-class estimates across bootstrap resamples (0 where constant)."""
    dist = bootstrap_distribution(
        codes.size,
        lambda idx: _per_class(_confusion_counts(codes[idx], k))[metric],
        n_boot=n_boot,
        seed=seed,
    )
    sd = dist.std(axis=0)
    live = sd > 0
    corr = np.eye(k)
    if live.sum() > 1:
        corr[np.ix_(live, live)] = np.corrcoef(dist[:, live], rowvar=False)
    return corr


def _averaged_metrics(
    codes: np.ndarray, k: int, point: dict[str, float], *, seed: int, n_boot: int
) -> dict[str, MetricValue]:
    """Macro and weighted precision, recall and F1 with MOVER intervals over per-class Wilsons.

    A resample-based interval collapses on a class with three items (all right: every resample
    says recall 1); a Wilson interval per class does not. The per-class intervals are combined
    by MOVER with the correlation the bootstrap shows between classes.
    """
    n = codes.size
    counts = _confusion_counts(codes[None, :], k)[0]
    support = counts.sum(axis=1).astype(float)
    out: dict[str, MetricValue] = {}
    for metric in ("precision", "recall", "f1"):
        hits, trials = _class_trials(counts, metric)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(trials > 0, hits / np.maximum(trials, 1), 0.0)
        est = _to_f1(share) if metric == "f1" else share
        ends = _wilson_per_class(hits, trials, metric == "f1")
        corr = _class_correlation(codes, k, metric, seed, n_boot)
        for average, weights in (("macro", np.full(k, 1.0 / k)), ("weighted", support / n)):
            name = f"{metric}_{average}"
            low, high = mover_interval(est, ends[:, 0], ends[:, 1], weights, corr)
            out[name] = _class_interval(point[name], n, low, high, support)
    return out


def _class_interval(
    value: float, n: int, low: float, high: float, support: np.ndarray
) -> MetricValue:
    """A MOVER MetricValue clipped to [0, 1], with a note when a class has few gold items."""
    metric = MetricValue(
        value=value, ci_low=max(0.0, low), ci_high=min(1.0, high), n=n, method="mover_wilson"
    )
    rare = int(support.min())
    if rare < MIN_BOOTSTRAP_N:
        metric.note = f"a class has {rare} gold item(s): its share of the interval is wide"
    return metric


def _micro_metrics(codes: np.ndarray, k: int, point: dict[str, float]) -> dict[str, MetricValue]:
    """Micro precision and recall (proportions: Wilson) and micro F1 (Wilson on Jaccard)."""
    n = codes.size
    counts = _confusion_counts(codes[None, :], k)[0]
    tp = int(np.trace(counts[:, :k]))
    predicted = int(counts[:, :k].sum())
    trials = {"precision_micro": predicted, "recall_micro": n, "f1_micro": n + predicted - tp}
    out: dict[str, MetricValue] = {}
    for name, t in trials.items():
        low, high = wilson_ci(tp, t) if t > 0 else (0.0, 1.0)
        if name == "f1_micro":
            low, high = (float(v) for v in _to_f1(np.array([low, high])))
        out[name] = MetricValue(value=point[name], ci_low=low, ci_high=high, n=n, method="wilson")
    return out


def _binary_metrics(codes: np.ndarray, k: int, positive: int) -> dict[str, MetricValue]:
    """precision, recall and F1 of the positive class (sklearn's average="binary")."""
    n = codes.size
    counts = _confusion_counts(codes[None, :], k)[0]
    out: dict[str, MetricValue] = {}
    for metric in ("precision", "recall", "f1"):
        hits, trials = _class_trials(counts, metric)
        h, t = int(hits[positive]), int(trials[positive])
        share = h / t if t else 0.0
        value = float(_to_f1(np.array(share))) if metric == "f1" else share
        low, high = _wilson_per_class(np.array([h]), np.array([t]), metric == "f1")[0]
        out[f"{metric}_binary"] = MetricValue(
            value=value, ci_low=float(low), ci_high=float(high), n=n, method="wilson"
        )
    return out


def _confusion_metrics(
    codes: np.ndarray, k: int, *, seed: int, n_boot: int, positive: int | None = None
) -> dict[str, MetricValue]:
    """The _CLASSIFICATION_NAMES metrics (and the positive class's), with their intervals."""
    values = _classification_scores(_confusion_counts(codes[None, :], k))[0]
    point = {name: float(v) for name, v in zip(_CLASSIFICATION_NAMES, values, strict=True)}
    out = _averaged_metrics(codes, k, point, seed=seed, n_boot=n_boot)
    out.update(_micro_metrics(codes, k, point))
    if positive is not None:
        out.update(_binary_metrics(codes, k, positive))
    return {name: out[name] for name in (*_CLASSIFICATION_NAMES, *sorted(set(out) - set(point)))}


def _classification_tables(counts: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """confusion_matrix (K x K, rows gold) with out-of-label counts, and per_class scores."""
    k = len(labels)
    pc = {key: v[0] for key, v in _per_class(counts[None]).items()}
    per_class = {
        label: {
            "precision": float(pc["precision"][i]),
            "recall": float(pc["recall"][i]),
            "f1": float(pc["f1"][i]),
            "support": int(pc["support"][i]),
        }
        for i, label in enumerate(labels)
    }
    confusion = {
        "labels": list(labels),
        "matrix": counts[:, :k].astype(int).tolist(),
        "out_of_labels": counts[:, k].astype(int).tolist(),
    }
    return {"confusion_matrix": confusion, "per_class": per_class}


# --------------------------------------------------------------------------- perplexity


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: len(re.split(r"\\s+", text))."""
    return len(re.split(r"\s+", text))


def count_bytes(text: str) -> int:
    """UTF-8 bytes of the text, as lm-evaluation-harness counts them."""
    return len(text.encode("utf-8"))


def perplexity_metrics(
    logprobs: list[float],
    n_tokens: list[int],
    n_words: list[int],
    n_bytes: list[int],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
) -> dict[str, MetricValue]:
    """Corpus-level perplexity, word_perplexity, byte_perplexity and bits_per_byte.

    ``logprobs`` are per-document sums of token log-probabilities (natural log). Aggregation is
    over the corpus (sum lp / sum units), as lm-evaluation-harness's weighted_perplexity and
    bits_per_byte, not a mean of per-document values. Intervals are studentized bootstraps
    over documents (each resample's ratio over its delta-method standard error), which hold
    their coverage from about ten documents. ``n`` counts documents.
    """
    n = _same_length(
        "perplexity_metrics", logprobs=logprobs, n_tokens=n_tokens, n_words=n_words, n_bytes=n_bytes
    )
    lp = np.asarray(logprobs, dtype=float)
    if not np.all(np.isfinite(lp)):
        raise ValueError("perplexity_metrics: log-probabilities must be finite")
    columns = {"n_tokens": n_tokens, "n_words": n_words, "n_bytes": n_bytes}
    out: dict[str, MetricValue] = {}
    for spec in ratio_metrics():
        name = spec.name
        den = np.asarray(columns[str(spec.unit)], dtype=float)

        def transform(r: np.ndarray, spec: MetricSpec = spec) -> np.ndarray:
            return apply_transform(spec, r)

        if np.any(den < 0) or den.sum() <= 0:
            raise ValueError(f"perplexity_metrics: counts for {name} must be >= 0 with a sum > 0")
        with np.errstate(over="ignore"):
            value = float(transform(np.asarray(lp.sum() / den.sum())))
        if n < MIN_RATIO_N:
            note = f"{n} document(s): a corpus-ratio interval needs at least {MIN_RATIO_N}"
            out[name] = too_few(value, n, note, "bootstrap_t_ratio")
            continue
        low, high = ratio_bootstrap_ci(lp, den, transform, n_boot=n_boot, seed=seed)
        out[name] = _interval(value, n, low, high, "bootstrap_t_ratio")
    return out


# --------------------------------------------------------------------------- generation

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_ROUGE = rouge_scorer.RougeScorer(["rougeL"])


def normalize_answer(s: str) -> str:
    """SQuAD normalization: lower case, drop punctuation, articles (a/an/the), extra spaces."""
    text = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _check_refs(refs: Sequence[str]) -> None:
    """Refuse an empty reference list or one given as a bare string."""
    if isinstance(refs, str) or len(refs) == 0:
        raise ValueError("references must be a non-empty list of strings per item")


def exact_match(pred: str, refs: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals any normalized reference, else 0.0."""
    _check_refs(refs)
    target = normalize_answer(pred)
    return float(any(target == normalize_answer(r) for r in refs))


def _f1_tokens(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    """SQuAD token F1 of two token lists; 1.0 if both are empty, 0.0 if only one is."""
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    same = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str, refs: Sequence[str]) -> float:
    """SQuAD token F1 on normalized answers, max over references (both empty counts as 1.0)."""
    _check_refs(refs)
    tokens = normalize_answer(pred).split()
    return max(_f1_tokens(tokens, normalize_answer(r).split()) for r in refs)


def rouge_l(pred: str, refs: Sequence[str]) -> float:
    """ROUGE-L F-measure (rouge_score, no stemming, default tokenizer), max over references."""
    _check_refs(refs)
    return max(_ROUGE.score(r, pred)["rougeL"].fmeasure for r in refs)


def _reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """sacrebleu's reference streams: stream j holds each item's j-th reference or None."""
    width = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def _corpus_metric(
    metric: Metric,
    predictions: Sequence[str],
    streams: list[list[str | None]],
    *,
    seed: int,
    n_boot: int,
    repeats: int = 1,
) -> MetricValue:
    """A corpus sacrebleu score with a bootstrap over items on its per-segment statistics.

    Like sacrebleu's own bootstrap, resamples sum segment statistics and rescore them through
    ``Metric._compute_score_from_stats``; the point value is ``Metric.corpus_score`` itself.
    The interval is BCa, its acceleration from a leave-one-group-out jackknife. With
    ``repeats`` K, the predictions are K consecutive outputs per item: the corpus holds every
    output and the bootstrap resamples items with all of their outputs (clustered by item).
    """
    n = len(predictions) // repeats
    refs = cast(Sequence[Sequence[str]], streams)  # sacrebleu documents None as padding
    value = float(metric.corpus_score(list(predictions), refs).score)
    segments = np.asarray(metric._extract_corpus_statistics(predictions, refs), dtype=np.int64)
    stats = segments.reshape(n, repeats, -1).sum(axis=1)

    def chunk(idx: np.ndarray) -> np.ndarray:
        summed = resample_counts(idx, n) @ stats
        return np.array([_score_from_stats(metric, row) for row in summed])

    groups = np.arange(n) % min(n, _JACKKNIFE_GROUPS)
    group_stats = np.zeros((groups.max() + 1, stats.shape[1]), dtype=np.int64)
    np.add.at(group_stats, groups, stats)
    jack = np.array([_score_from_stats(metric, row) for row in stats.sum(axis=0) - group_stats])
    return _bootstrapped(value, n, chunk, jack, seed=seed, n_boot=n_boot)


def _score_from_stats(metric: Metric, summed: np.ndarray) -> float:
    """sacrebleu's corpus score from summed integer segment statistics."""
    return float(metric._compute_score_from_stats([int(x) for x in summed]).score)


def _generation_items(
    predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> list[dict[str, float]]:
    """Per-item exact_match, token_f1, rouge_l and sentence-level bleu and chrf."""
    sentence_bleu, sentence_chrf = sacrebleu.BLEU(effective_order=True), sacrebleu.CHRF()
    return [
        {
            "exact_match": exact_match(pred, refs),
            "token_f1": token_f1(pred, refs),
            "rouge_l": rouge_l(pred, refs),
            "bleu": float(sentence_bleu.sentence_score(pred, list(refs)).score),
            "chrf": float(sentence_chrf.sentence_score(pred, list(refs)).score),
        }
        for pred, refs in zip(predictions, references, strict=True)
    ]


def generation_metrics(
    predictions: list[str] | list[list[str]],
    references: list[list[str]],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    corpus_n_boot: int = CORPUS_N_BOOT,
) -> tuple[dict[str, MetricValue], list[dict[str, float]]]:
    """exact_match, token_f1, rouge_l (item means) and corpus bleu, chrf (sacrebleu defaults).

    exact_match is binary and gets a Wilson interval; token_f1 and rouge_l a BCa bootstrap of
    the mean; bleu and chrf (0-100) a BCa bootstrap over items (1000 resamples, sacrebleu's
    default) that recomputes the corpus score from sacrebleu's per-segment statistics. Items
    may have different numbers of references. Per-item dicts add sentence-level bleu
    (sacrebleu.sentence_bleu) and chrf (sentence_chrf).

    With K sampled outputs per item (a list of K strings each), every per-item metric is the
    item's mean over its outputs, the mean metrics get a BCa bootstrap of those item means
    (exact_match too, unless every item's outputs agree) and the corpus scores cover every
    output; all intervals resample items with all of their outputs, so they hold the
    item-to-item and the sampling variance together.
    """
    aggregates, per_item, _ = sampled_generation_metrics(
        predictions, references, seed=seed, n_boot=n_boot, corpus_n_boot=corpus_n_boot
    )
    return aggregates, per_item


def sampled_generation_metrics(
    predictions: list[str] | list[list[str]],
    references: list[list[str]],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    corpus_n_boot: int = CORPUS_N_BOOT,
) -> tuple[dict[str, MetricValue], list[dict[str, float]], dict[str, np.ndarray]]:
    """`generation_metrics`, plus each per-item metric of every output as an (items, K) array
    (what splits the spread into item and sampling variance)."""
    _same_length("generation_metrics", predictions=predictions, references=references)
    for refs in references:
        _check_refs(refs)
    outputs = [[p] if isinstance(p, str) else list(p) for p in predictions]
    repeats = len(outputs[0]) if outputs else 1
    if any(len(o) != repeats for o in outputs) or repeats < 1:
        raise ValueError("generation_metrics: every item needs the same number of outputs")
    flat = [o for item in outputs for o in item]
    flat_refs = [refs for refs in references for _ in range(repeats)]
    draws = _generation_items(flat, flat_refs)
    matrix = {k: np.array([d[k] for d in draws]).reshape(-1, repeats) for k in draws[0]}
    per_item = [{k: float(m[i].mean()) for k, m in matrix.items()} for i in range(len(outputs))]
    column = {key: m.mean(axis=1) for key, m in matrix.items()}
    streams = _reference_streams(flat_refs)
    aggregates = {
        # outputs that agree within every item leave 0/1 item means: Wilson over items
        "exact_match": mean_metric(
            column["exact_match"],
            binary=bool(np.all(np.isin(column["exact_match"], (0.0, 1.0)))),
            seed=seed,
            n_boot=n_boot,
        ),
        "token_f1": mean_metric(column["token_f1"], seed=seed, n_boot=n_boot),
        "rouge_l": mean_metric(column["rouge_l"], seed=seed, n_boot=n_boot),
        "bleu": _corpus_metric(
            sacrebleu.BLEU(), flat, streams, seed=seed, n_boot=corpus_n_boot, repeats=repeats
        ),
        "chrf": _corpus_metric(
            sacrebleu.CHRF(), flat, streams, seed=seed, n_boot=corpus_n_boot, repeats=repeats
        ),
    }
    return aggregates, per_item, matrix


def corpus_statistics(
    name: str, predictions: Sequence[str], references: Sequence[Sequence[str]]
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Per-item sacrebleu statistics of ``bleu`` or ``chrf`` and the score of summed rows.

    The score maps (rows, k) summed statistics to corpus scores, so resampled or swapped
    corpora are rescored without re-tokenizing.
    """
    metrics: dict[str, Callable[[], Metric]] = {"bleu": sacrebleu.BLEU, "chrf": sacrebleu.CHRF}
    if name not in metrics:
        raise ValueError(f"no corpus statistics for {name!r}: expected one of {sorted(metrics)}")
    metric = metrics[name]()
    refs = cast(Sequence[Sequence[str]], _reference_streams(references))
    stats = np.asarray(metric._extract_corpus_statistics(list(predictions), refs), dtype=float)

    def score(summed: np.ndarray) -> np.ndarray:
        return np.array([_score_from_stats(metric, row) for row in np.rint(summed)])

    return stats, score
