"""Confidence intervals and significance tests for evaluation metrics (numpy/scipy only).

Every resampling function is deterministic given its ``seed``. Bootstrap resamples are drawn as
index matrices in chunks of at most ``_CHUNK_ELEMENTS`` entries, so memory stays bounded while the
work stays vectorized.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "McNemarResult",
    "PairedResult",
    "PermutationResult",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_distribution",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_permutation_test",
    "percentile_interval",
    "ratio_bootstrap_ci",
    "resample_counts",
    "resample_indices",
    "wilson_ci",
]

# At most this many int64 indices (32 MiB) are held per chunk of bootstrap resamples.
_CHUNK_ELEMENTS = 1 << 22
# Sign-flip tests enumerate all 2**n patterns exactly when n is at most this.
_EXACT_PERMUTATION_MAX_N = 16

Statistic = Callable[..., Any]
ChunkFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test: b = only A correct, c = only B correct, two-sided p-value."""

    b: int
    c: int
    p_value: float


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison: diff = statistic(b) - statistic(a), its interval and a p-value."""

    diff: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class PermutationResult:
    """Sign-flip permutation test: diff = mean(b - a) and its two-sided p-value."""

    diff: float
    p_value: float


def _as_1d(values: Any, name: str = "values") -> np.ndarray:
    """A 1-D float array, refusing empty input with a clear message."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: at least one item is needed")
    return arr


def _check_confidence(confidence: float) -> None:
    """Refuse a confidence level outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def resample_indices(
    n: int, *, n_boot: int = 1000, seed: int = 0, chunk_elements: int = _CHUNK_ELEMENTS
) -> Iterator[np.ndarray]:
    """Yield bootstrap index matrices of shape (rows, n), n_boot rows in all, deterministically."""
    if n < 1:
        raise ValueError("cannot resample from zero items")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    rows = max(1, chunk_elements // n)
    done = 0
    while done < n_boot:
        take = min(rows, n_boot - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each of n items occurs in each resample row of ``idx``: shape (rows, n)."""
    rows = idx.shape[0]
    offsets = (np.arange(rows) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=rows * n).reshape(rows, n)


def bootstrap_distribution(
    n: int, chunk_fn: ChunkFunction, *, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """Apply ``chunk_fn`` to each chunk of resample indices; stack the per-row results."""
    parts = [np.asarray(chunk_fn(idx)) for idx in resample_indices(n, n_boot=n_boot, seed=seed)]
    return np.concatenate(parts, axis=0)


def percentile_interval(
    distribution: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0 of a bootstrap distribution (one per column if 2-D)."""
    _check_confidence(confidence)
    alpha = 1.0 - confidence
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _row_statistic(statistic: Statistic, samples: np.ndarray) -> np.ndarray:
    """statistic over each row, vectorized via ``axis=1`` when the statistic accepts it."""
    try:
        out = np.asarray(statistic(samples, axis=1), dtype=float)
    except TypeError:
        out = np.array([statistic(row) for row in samples], dtype=float)
    if out.shape != (samples.shape[0],):
        raise ValueError("statistic must reduce a 1-D array to a scalar")
    return out


def _cluster_codes(clusters: Any, n: int) -> tuple[np.ndarray, int]:
    """Integer cluster codes for each item and the number of distinct clusters."""
    labels = np.asarray(clusters)
    if labels.shape != (n,):
        raise ValueError(f"clusters must have the same length as values ({n}), got {labels.shape}")
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    return codes, int(codes.max()) + 1


def _clustered_distribution(
    values: np.ndarray, statistic: Statistic, clusters: Any, n_boot: int, seed: int
) -> np.ndarray:
    """Bootstrap distribution of statistic when whole clusters are resampled."""
    codes, n_clusters = _cluster_codes(clusters, values.size)
    is_mean = statistic is np.mean

    def chunk(idx: np.ndarray) -> np.ndarray:
        item_weights = resample_counts(idx, n_clusters)[:, codes]
        if is_mean:
            return (item_weights @ values) / item_weights.sum(axis=1)
        return np.array([float(statistic(np.repeat(values, w))) for w in item_weights])

    return bootstrap_distribution(n_clusters, chunk, n_boot=n_boot, seed=seed)


def bootstrap_ci(
    values: Any,
    statistic: Statistic = np.mean,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    clusters: Any = None,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of statistic(values); with clusters, resample whole clusters.

    ``statistic`` is called as ``statistic(samples, axis=1)`` on a (rows, n) matrix when it accepts
    ``axis`` (numpy reductions do); otherwise it is applied row by row. With clusters, np.mean
    uses a weighted fast path and other statistics are applied to each expanded resample.
    """
    arr = _as_1d(values)
    _check_confidence(confidence)
    if clusters is not None:
        dist = _clustered_distribution(arr, statistic, clusters, n_boot, seed)
    else:
        dist = bootstrap_distribution(
            arr.size, lambda idx: _row_statistic(statistic, arr[idx]), n_boot=n_boot, seed=seed
        )
    low, high = percentile_interval(dist, confidence)
    return float(low), float(high)


def ratio_bootstrap_ci(
    numerator: Any,
    denominator: Any,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Bootstrap interval of transform(sum(num) / sum(den)), resampling units (e.g. documents).

    ``transform`` must work elementwise on an array (e.g. ``lambda r: np.exp(-r)``).
    """
    num = _as_1d(numerator, "numerator")
    den = _as_1d(denominator, "denominator")
    if num.shape != den.shape:
        raise ValueError("numerator and denominator must have the same length")
    _check_confidence(confidence)

    def chunk(idx: np.ndarray) -> np.ndarray:
        counts = resample_counts(idx, num.size)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return np.asarray(transform((counts @ num) / (counts @ den)), dtype=float)

    low, high = percentile_interval(
        bootstrap_distribution(num.size, chunk, n_boot=n_boot, seed=seed), confidence
    )
    return float(low), float(high)


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction)."""
    if n < 1:
        raise ValueError("wilson_ci needs n >= 1 trials")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n], got {successes} of {n}")
    _check_confidence(confidence)
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return float(low), float(high)


def _paired_bool(a_correct: Any, b_correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-length boolean arrays."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("a_correct and b_correct must be 1-D and of the same length")
    return a, b


def mcnemar_exact(a_correct: Any, b_correct: Any) -> McNemarResult:
    """Exact two-sided McNemar test: binomial test of b vs c discordant pairs at p = 1/2."""
    a, b_arr = _paired_bool(a_correct, b_correct)
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    if b + c == 0:
        return McNemarResult(b=0, c=0, p_value=1.0)
    p = float(sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(b=b, c=c, p_value=min(1.0, p))


def _paired_arrays(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-length non-empty 1-D float arrays."""
    a_arr = _as_1d(a, "a")
    b_arr = _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must be paired (same length): {a_arr.size} != {b_arr.size}")
    return a_arr, b_arr


def paired_bootstrap(
    a: Any,
    b: Any,
    statistic: Statistic = np.mean,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedResult:
    """Paired bootstrap of statistic(b) - statistic(a), resampling items jointly.

    The p-value inverts the percentile interval: p = 2 * min(P*(d <= 0), P*(d >= 0)) over the
    bootstrap differences d, with add-one smoothing ((k + 1) / (n_boot + 1)) so it is never 0;
    the smallest reportable p-value is therefore 2 / (n_boot + 1). It is clipped to 1.
    """
    a_arr, b_arr = _paired_arrays(a, b)
    _check_confidence(confidence)
    diff = float(statistic(b_arr)) - float(statistic(a_arr))

    def chunk(idx: np.ndarray) -> np.ndarray:
        return _row_statistic(statistic, b_arr[idx]) - _row_statistic(statistic, a_arr[idx])

    dist = bootstrap_distribution(a_arr.size, chunk, n_boot=n_boot, seed=seed)
    low, high = percentile_interval(dist, confidence)
    return PairedResult(
        diff=diff, ci_low=float(low), ci_high=float(high), p_value=bootstrap_p_value(dist)
    )


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of a zero difference from bootstrap differences, add-one smoothed:
    2 * (min(#d <= 0, #d >= 0) + 1) / (n + 1), clipped to 1."""
    tail = min(int(np.sum(differences <= 0)), int(np.sum(differences >= 0)))
    return min(1.0, 2.0 * (tail + 1) / (differences.size + 1))


def paired_permutation_test(
    a: Any, b: Any, *, n_perm: int = 10000, seed: int = 0
) -> PermutationResult:
    """Two-sided sign-flip permutation test of mean(b - a) = 0 for paired items.

    Exact (all 2**n sign patterns) when n <= 16; otherwise Monte Carlo with n_perm random sign
    patterns and p = (1 + #{|T*| >= |T|}) / (n_perm + 1).
    """
    a_arr, b_arr = _paired_arrays(a, b)
    d = b_arr - a_arr
    n = d.size
    observed = float(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= _EXACT_PERMUTATION_MAX_N:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        means = ((1 - 2 * patterns) @ d) / n
        p = float(np.mean(np.abs(means) >= abs(observed) - tol))
        return PermutationResult(diff=observed, p_value=min(1.0, p))
    if n_perm < 1:
        raise ValueError(f"n_perm must be positive, got {n_perm}")
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    hits, done = 0, 0
    while done < n_perm:
        take = min(rows, n_perm - done)
        signs = rng.integers(0, 2, size=(take, n), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs((signs @ d) / n) >= abs(observed) - tol))
        done += take
    return PermutationResult(diff=observed, p_value=min(1.0, (hits + 1) / (n_perm + 1)))


def benjamini_hochberg(pvalues: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same shape as the input, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    flat = p.ravel()
    if flat.size == 0:
        return p.copy()
    if np.any(np.isnan(flat)) or np.any((flat < 0) | (flat > 1)):
        raise ValueError("p-values must lie in [0, 1] (and not be NaN)")
    m = flat.size
    order = np.argsort(flat)
    scaled = flat[order] * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    adjusted = np.empty_like(flat)
    adjusted[order] = adjusted_sorted
    return adjusted.reshape(p.shape)
