"""Confidence intervals and significance tests for evaluation metrics (numpy/scipy only).

Every resampling function is deterministic given its ``seed``. Bootstrap resamples are drawn as
index matrices in chunks of at most ``_CHUNK_ELEMENTS`` entries, so memory stays bounded while the
work stays vectorized.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "McNemarResult",
    "PairedResult",
    "PermutationResult",
    "bca_interval",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_distribution",
    "bootstrap_p_value",
    "clustered_wilson_ci",
    "expanded_tail",
    "jackknife_acceleration",
    "mcnemar_exact",
    "mean_score",
    "mover_interval",
    "paired_bootstrap",
    "paired_mean_test",
    "paired_permutation_test",
    "paired_proportion_test",
    "paired_ratio_interval",
    "paired_sums_interval",
    "paired_t_interval",
    "percentile_interval",
    "ratio_bootstrap_ci",
    "resample_counts",
    "resample_indices",
    "sampling_spread",
    "swap_permutation_test",
    "tango_paired_ci",
    "two_group_permutation_test",
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


def expanded_tail(n: int, confidence: float = 0.95) -> float:
    """The lower tail probability an interval of ``n`` items uses: alpha / 2 widened for small n.

    Hesterberg's expansion: the normal quantile z is replaced by sqrt(n / (n - 1)) * t(n - 1),
    so percentile-type bootstrap intervals are no narrower than a t interval. The factor tends
    to 1 as n grows; the bootstrap's narrowness bias at small n is what it corrects.
    """
    _check_confidence(confidence)
    alpha = 1.0 - confidence
    if n < 2:
        return alpha / 2
    t = float(sps.t.ppf(1 - alpha / 2, n - 1))
    return float(sps.norm.cdf(-np.sqrt(n / (n - 1)) * t))


def jackknife_acceleration(leave_one_out: np.ndarray) -> np.ndarray:
    """BCa acceleration from leave-one-out estimates (axis 0 = the deleted unit)."""
    theta = np.asarray(leave_one_out, dtype=float)
    dev = theta.mean(axis=0) - theta
    num = (dev**3).sum(axis=0)
    den = 6.0 * (dev**2).sum(axis=0) ** 1.5
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(den > 0, num / den, 0.0)
    return np.nan_to_num(a)


def bca_interval(
    point: Any,
    distribution: np.ndarray,
    leave_one_out: np.ndarray,
    n: int,
    confidence: float = 0.95,
    *,
    expand: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated interval, with tails expanded for small n.

    ``distribution`` holds bootstrap replicates on axis 0, ``leave_one_out`` the jackknife
    estimates on axis 0; several statistics may sit side by side on axis 1. Non-finite
    replicates are dropped column by column. ``expand=False`` gives Efron's plain BCa.
    """
    dist = np.asarray(distribution, dtype=float)
    flat = dist.ndim == 1
    dist = dist.reshape(dist.shape[0], -1)
    theta = np.asarray(point, dtype=float).reshape(-1)
    accel = jackknife_acceleration(np.asarray(leave_one_out, dtype=float).reshape(-1, theta.size))
    tail = expanded_tail(n, confidence) if expand else (1.0 - confidence) / 2
    tail = max(tail, 1e-12)  # two or three items expand the tail past float precision
    z_tails = sps.norm.ppf([tail, 1 - tail])
    lows, highs = np.empty(theta.size), np.empty(theta.size)
    for j in range(theta.size):
        col = dist[:, j][np.isfinite(dist[:, j])]
        if col.size == 0:
            lows[j] = highs[j] = np.nan
            continue
        share = (np.sum(col < theta[j]) + 0.5 * np.sum(col == theta[j])) / col.size
        z0 = float(sps.norm.ppf(np.clip(share, 0.5 / col.size, 1 - 0.5 / col.size)))
        z = z0 + z_tails
        with np.errstate(divide="ignore", invalid="ignore"):
            probs = sps.norm.cdf(z0 + z / (1 - accel[j] * z))
        probs = np.nan_to_num(probs, nan=0.5)
        lows[j], highs[j] = np.quantile(col, np.clip(np.sort(probs), 0.0, 1.0))
    if flat:
        return lows[:1].reshape(()), highs[:1].reshape(())
    return lows, highs


def _group_jackknife(values: np.ndarray, statistic: Statistic, groups: int = 200) -> np.ndarray:
    """Leave-one-group-out estimates of a generic statistic (at most ``groups`` groups)."""
    n = values.size
    labels = np.arange(n) % min(groups, n)
    out = [_scalar(statistic, values[labels != g]) for g in range(min(groups, n))]
    return np.asarray(out)


def _scalar(statistic: Statistic, values: np.ndarray) -> float:
    """statistic of one 1-D sample, called the way _row_statistic calls it."""
    return float(_row_statistic(statistic, values[None, :])[0])


def _mean_jackknife(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out means (weighted when ``weights`` are given), in O(n)."""
    w = np.ones_like(values) if weights is None else weights
    total, mass = float(w @ values), float(w.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return (total - w * values) / (mass - w)


def bootstrap_ci(
    values: Any,
    statistic: Statistic = np.mean,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    clusters: Any = None,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """BCa bootstrap interval of statistic(values) (tails expanded for small n).

    With ``clusters``, whole clusters are resampled and deleted (the independent unit is the
    cluster). ``statistic`` is called as ``statistic(samples, axis=1)`` on a (rows, n) matrix
    when it accepts ``axis`` (numpy reductions do); otherwise it is applied row by row.
    """
    arr = _as_1d(values)
    _check_confidence(confidence)
    point = _scalar(statistic, arr)
    if clusters is not None:
        dist, jack, units = _clustered(arr, statistic, clusters, n_boot, seed)
    else:
        dist = bootstrap_distribution(
            arr.size, lambda idx: _row_statistic(statistic, arr[idx]), n_boot=n_boot, seed=seed
        )
        jack = _mean_jackknife(arr) if statistic is np.mean else _group_jackknife(arr, statistic)
        units = arr.size
    low, high = bca_interval(point, dist, jack, units, confidence)
    return float(low), float(high)


def _clustered(
    values: np.ndarray, statistic: Statistic, clusters: Any, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Bootstrap replicates, leave-one-cluster-out estimates and the number of clusters."""
    codes, n_clusters = _cluster_codes(clusters, values.size)
    if statistic is np.mean:
        sums = np.bincount(codes, weights=values, minlength=n_clusters)
        sizes = np.bincount(codes, minlength=n_clusters).astype(float)
        jack = (sums.sum() - sums) / (sizes.sum() - sizes)
    else:
        jack = np.array([_scalar(statistic, values[codes != c]) for c in range(n_clusters)])
    dist = _clustered_distribution(values, statistic, clusters, n_boot, seed)
    return dist, jack, n_clusters


def _ratio_se(counts: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Ratio estimates and their delta-method standard errors, one per row of counts."""
    mass = counts.sum(axis=1)
    sx, sy = counts @ num, counts @ den
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sx / sy
        resid2 = counts @ (num * num) - 2 * ratio * (counts @ (num * den))
        resid2 += ratio * ratio * (counts @ (den * den))
        se = np.sqrt(np.maximum(resid2, 0.0) / (mass * (mass - 1))) / (sy / mass)
    return np.stack([ratio, se], axis=1)


def _studentized(
    point: float, se: float, dist: np.ndarray, confidence: float
) -> tuple[float, float]:
    """Bootstrap-t interval ends from resampled (estimate, standard error) rows; the point
    itself when no resample or the estimate has a usable error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (dist[:, 0] - point) / dist[:, 1]
    t = t[np.isfinite(t)]
    if t.size == 0 or not np.isfinite(se) or se == 0:
        return float(point), float(point)
    alpha = 1.0 - confidence
    t_high, t_low = np.quantile(t, [1 - alpha / 2, alpha / 2])
    return float(point - t_high * se), float(point - t_low * se)


def ratio_bootstrap_ci(
    numerator: Any,
    denominator: Any,
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Studentized (bootstrap-t) interval of transform(sum(num) / sum(den)) over units.

    Each resample's ratio is standardized by its own delta-method standard error, which keeps
    coverage at a handful of heterogeneous documents where percentile intervals are too narrow.
    ``transform`` must be monotone and elementwise (e.g. ``lambda r: np.exp(-r)``): the interval
    is built on the ratio and its ends transformed.
    """
    num = _as_1d(numerator, "numerator")
    den = _as_1d(denominator, "denominator")
    if num.shape != den.shape:
        raise ValueError("numerator and denominator must have the same length")
    _check_confidence(confidence)
    ratio, se = _ratio_se(np.ones((1, num.size)), num, den)[0]
    dist = bootstrap_distribution(
        num.size,
        lambda idx: _ratio_se(resample_counts(idx, num.size).astype(float), num, den),
        n_boot=n_boot,
        seed=seed,
    )
    low, high = _studentized(ratio, se, dist, confidence)
    ends = np.asarray(transform(np.array([low, high])), dtype=float)
    return float(ends.min()), float(ends.max())


def _slope(transform: Callable[[np.ndarray], np.ndarray], r: np.ndarray) -> np.ndarray:
    """The transform's derivative at each r (central differences)."""
    h = 1e-6 * np.maximum(1.0, np.abs(r))
    with np.errstate(over="ignore", invalid="ignore"):
        return (np.asarray(transform(r + h)) - np.asarray(transform(r - h))) / (2 * h)


def _paired_ratio_se(
    counts: np.ndarray,
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    transform: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """transform(ratio B) - transform(ratio A) and its delta-method standard error, one per
    row of counts (items resampled jointly, so the runs' correlation enters the error)."""
    mass = counts.sum(axis=1)
    influence = np.zeros_like(counts, dtype=float)
    diff = np.zeros(counts.shape[0])
    for sign, (num, den) in ((-1.0, a), (1.0, b)):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (counts @ num) / (counts @ den)
            mean_den = (counts @ den) / mass
            resid = (num[None, :] - ratio[:, None] * den[None, :]) / mean_den[:, None]
        influence += sign * _slope(transform, ratio)[:, None] * resid
        diff += sign * np.asarray(transform(ratio), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt((counts * influence**2).sum(axis=1) / (mass * (mass - 1)))
    return np.stack([diff, se], axis=1)


def paired_ratio_interval(
    a: tuple[Any, Any],
    b: tuple[Any, Any],
    transform: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """transform(sum(num_b) / sum(den_b)) - transform(sum(num_a) / sum(den_a)) with a paired
    studentized (bootstrap-t) interval over items.

    ``a`` and ``b`` are (numerators, denominators) of the same items under two runs (log-probs
    and tokens or bytes of each document). Each joint resample's difference is standardized by
    its own delta-method standard error: with a few long, heterogeneous documents a paired BCa
    interval of the difference covered 85-88%.
    """
    num_a, den_a = (_as_1d(x, "a") for x in a)
    num_b, den_b = (_as_1d(x, "b") for x in b)
    if not num_a.shape == den_a.shape == num_b.shape == den_b.shape:
        raise ValueError("the runs' numerators and denominators must have the same length")
    _check_confidence(confidence)
    n = num_a.size
    diff, se = _paired_ratio_se(np.ones((1, n)), (num_a, den_a), (num_b, den_b), transform)[0]
    dist = bootstrap_distribution(
        n,
        lambda idx: _paired_ratio_se(
            resample_counts(idx, n).astype(float), (num_a, den_a), (num_b, den_b), transform
        ),
        n_boot=n_boot,
        seed=seed,
    )
    low, high = _studentized(diff, se, dist, confidence)
    return float(diff), low, high


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
    """Paired bootstrap of statistic(b) - statistic(a), resampling items jointly (BCa interval).

    For the decision use ``paired_mean_test`` (a sign-flip test keeps its size at small n,
    this bootstrap p-value does not). The p-value inverts the percentile interval:
    p = 2 * min(P*(d <= 0), P*(d >= 0)) over the bootstrap differences d, with add-one
    smoothing ((k + 1) / (n_boot + 1)) so it is never 0; the smallest reportable p-value is
    therefore 2 / (n_boot + 1). It is clipped to 1.
    """
    a_arr, b_arr = _paired_arrays(a, b)
    _check_confidence(confidence)
    diff = float(statistic(b_arr)) - float(statistic(a_arr))

    def chunk(idx: np.ndarray) -> np.ndarray:
        return _row_statistic(statistic, b_arr[idx]) - _row_statistic(statistic, a_arr[idx])

    dist = bootstrap_distribution(a_arr.size, chunk, n_boot=n_boot, seed=seed)
    jack = _group_jackknife(b_arr, statistic) - _group_jackknife(a_arr, statistic)
    low, high = bca_interval(diff, dist, jack, a_arr.size, confidence)
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

    ``swap_permutation_test`` on (value, 1) statistics: exact (all 2**n sign patterns) when
    n <= 16; otherwise Monte Carlo with n_perm random patterns and p = (1 + hits) / (n_perm + 1).
    """
    a_arr, b_arr = _paired_arrays(a, b)
    if n_perm < 1:
        raise ValueError(f"n_perm must be positive, got {n_perm}")
    ones = np.ones_like(a_arr)
    sa, sb = np.stack([a_arr, ones], axis=1), np.stack([b_arr, ones], axis=1)
    p = swap_permutation_test(sa, sb, mean_score, n_perm=n_perm, seed=seed)
    return PermutationResult(diff=float((b_arr - a_arr).mean()), p_value=p)


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


# --------------------------------------------------------------------------- paired statistics

Score = Callable[[np.ndarray], np.ndarray]


def _sign_patterns(n: int, n_perm: int, seed: int) -> Iterator[np.ndarray]:
    """0/1 swap patterns, shape (rows, n): all 2**n of them when n is small, else random ones."""
    if n <= _EXACT_PERMUTATION_MAX_N:
        yield ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(float)
        return
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    done = 0
    while done < n_perm:
        take = min(rows, n_perm - done)
        yield rng.integers(0, 2, size=(take, n)).astype(float)
        done += take


def swap_permutation_test(
    stats_a: np.ndarray,
    stats_b: np.ndarray,
    score: Score,
    *,
    n_perm: int = 10000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of score(sum B) - score(sum A) = 0 by swapping A and B within items.

    ``stats_a`` and ``stats_b`` are (n, k) additive per-item statistics (a value and a count
    for a mean; log-probability and units for a ratio; sacrebleu's segment counts for BLEU);
    ``score`` maps summed (rows, k) statistics to (rows,) scores. Under the null that the two
    runs are exchangeable on each item the test is exact: all 2**n swaps for n <= 16, else
    Monte Carlo with p = (1 + hits) / (n_perm + 1). The paired sign-flip test of a mean and
    approximate randomization for corpus metrics are this test with different statistics.
    """
    a, b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    total_a, total_b, delta = a.sum(axis=0), b.sum(axis=0), b - a
    observed = float(score(total_b[None])[0] - score(total_a[None])[0])
    tol = 1e-9 * max(1.0, abs(observed))
    hits, count = 0, 0
    exact = a.shape[0] <= _EXACT_PERMUTATION_MAX_N
    for swaps in _sign_patterns(a.shape[0], n_perm, seed):
        moved = swaps @ delta
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            diffs = score(total_b - moved) - score(total_a + moved)
        hits += int(np.sum(np.abs(diffs) >= abs(observed) - tol))
        count += swaps.shape[0]
    if exact:
        return min(1.0, hits / count)
    return min(1.0, (hits + 1) / (count + 1))


def paired_sums_interval(
    stats_a: np.ndarray,
    stats_b: np.ndarray,
    score: Score,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """score(sum B) - score(sum A) with a paired BCa interval (items resampled jointly)."""
    a, b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    n = a.shape[0]
    total_a, total_b = a.sum(axis=0), b.sum(axis=0)

    def diff(sum_a: np.ndarray, sum_b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return score(sum_b) - score(sum_a)

    point = float(diff(total_a[None], total_b[None])[0])

    def chunk(idx: np.ndarray) -> np.ndarray:
        counts = resample_counts(idx, n).astype(float)
        return diff(counts @ a, counts @ b)

    dist = bootstrap_distribution(n, chunk, n_boot=n_boot, seed=seed)
    jack = diff(total_a[None] - _group_sums(a), total_b[None] - _group_sums(b))
    low, high = bca_interval(point, dist, jack, n, confidence)
    return point, float(low), float(high)


def _group_sums(stats: np.ndarray, groups: int = 500) -> np.ndarray:
    """Per-group sums of item statistics: items one per group up to ``groups`` items, so the
    jackknife is leave-one-out for small n and leave-one-group-out (bounded cost) above."""
    labels = np.arange(stats.shape[0]) % min(groups, stats.shape[0])
    out = np.zeros((int(labels.max()) + 1, stats.shape[1]))
    np.add.at(out, labels, stats)
    return out


def mean_score(sums: np.ndarray) -> np.ndarray:
    """The score of (value, count) sums: their ratio, i.e. the mean."""
    return np.asarray(sums[:, 0] / sums[:, 1])


def paired_t_interval(a: Any, b: Any, confidence: float = 0.95) -> tuple[float, float]:
    """The paired t-interval of mean(b) - mean(a) (Student's t on the item differences)."""
    _check_confidence(confidence)
    a_arr, b_arr = _paired_arrays(a, b)
    d = b_arr - a_arr
    if d.size < 2:
        raise ValueError("paired_t_interval needs at least two pairs")
    half = float(sps.t.ppf(0.5 + confidence / 2, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
    return float(d.mean() - half), float(d.mean() + half)


def paired_mean_test(
    a: Any, b: Any, *, n_boot: int = 2000, n_perm: int = 10000, seed: int = 0
) -> PairedResult:
    """mean(b) - mean(a): paired BCa interval and a sign-flip permutation p-value.

    The sign-flip test is exact for n <= 16 and Monte Carlo above; unlike a bootstrap p-value
    it keeps its size at ten items.
    """
    a_arr, b_arr = _paired_arrays(a, b)
    ones = np.ones_like(a_arr)
    sa, sb = np.stack([a_arr, ones], axis=1), np.stack([b_arr, ones], axis=1)
    diff, low, high = paired_sums_interval(sa, sb, mean_score, n_boot=n_boot, seed=seed)
    p = paired_permutation_test(a_arr, b_arr, n_perm=n_perm, seed=seed).p_value
    return PairedResult(diff=diff, ci_low=low, ci_high=high, p_value=p)


def _tango_z(only_a: int, only_b: int, n: int, delta: float) -> float:
    """Tango's score statistic for p(B) - p(A) = delta in paired 0/1 data.

    Under the null, the discordant counts have Var(only_b - only_a) = n (p_ab + p_ba - delta^2)
    with the restricted maximum-likelihood cell probabilities (a closed-form quadratic root).
    """
    # Tango's notation: difference p12 - p21 with b = n12 (only A right), c = n21 (only B)
    t, b, c = -delta, only_a, only_b
    quad_b = -b - c + (2 * n - b + c) * t
    quad_c = -c * t * (1 - t)
    p21 = (-quad_b + math.sqrt(max(quad_b * quad_b - 8 * n * quad_c, 0.0))) / (4 * n)
    variance = n * (2 * p21 + t * (1 - t))
    numerator = b - c - n * t
    if variance <= 0:
        return 0.0 if numerator == 0 else -math.copysign(math.inf, numerator)
    return -numerator / math.sqrt(variance)


def tango_paired_ci(
    a_correct: Any, b_correct: Any, confidence: float = 0.95
) -> tuple[float, float]:
    """Tango's (1998) asymptotic score interval for p(B correct) - p(A correct), paired.

    The interval holds every difference its score test does not reject. Both tails stay near
    their share of 1 - confidence, which a non-inferiority verdict relies on: Newcombe's hybrid
    interval let a candidate worse by exactly the margin pass 3.3-4.3% of the time (one side of
    a 95% interval, 30-100 items); Tango's 1.4-2.6%.
    """
    from scipy.optimize import brentq

    _check_confidence(confidence)
    a, b = _paired_bool(a_correct, b_correct)
    n = a.size
    if n == 0:
        raise ValueError("tango_paired_ci needs at least one pair")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    observed = (only_b - only_a) / n
    edge = 1.0 - 1e-12

    def score(d: float) -> float:
        return _tango_z(only_a, only_b, n, d)

    low = -1.0 if score(-edge) <= z else brentq(lambda d: score(d) - z, -edge, observed)
    high = 1.0 if score(edge) >= -z else brentq(lambda d: score(d) + z, observed, edge)
    return float(low), float(high)


def paired_proportion_test(
    a_correct: Any, b_correct: Any, *, alpha: float = 0.05
) -> tuple[PairedResult, McNemarResult]:
    """p(B) - p(A) for 0/1 items: Tango's score interval and the exact McNemar test, made to
    agree.

    The exact test is kept as the decision; where it does not reject at ``alpha`` but the
    score interval excludes 0, the interval is widened to reach 0, so the two never disagree
    in that direction. The opposite case (rejected, interval containing 0) is left as is and
    is what the coverage bench measures.
    """
    a, b = _paired_bool(a_correct, b_correct)
    test = mcnemar_exact(a, b)
    low, high = tango_paired_ci(a, b, 1.0 - alpha)
    if test.p_value >= alpha:
        low, high = min(low, 0.0), max(high, 0.0)
    diff = float(b.mean() - a.mean())
    return PairedResult(diff=diff, ci_low=low, ci_high=high, p_value=test.p_value), test


# --------------------------------------------------------------------------- groups and clusters


def two_group_permutation_test(x: Any, y: Any, *, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided permutation p-value of mean(y) - mean(x) = 0 for two independent groups.

    Group labels are reassigned at random (Monte Carlo, p = (1 + hits) / (n_perm + 1)), so the
    test keeps its size even when one group has five items that are all correct, where
    bootstrapping each group alone gives a one-point distribution.
    """
    x_arr, y_arr = _as_1d(x, "x"), _as_1d(y, "y")
    pooled = np.concatenate([x_arr, y_arr])
    total, m, n = float(pooled.sum()), y_arr.size, pooled.size

    def gap(sum_y: np.ndarray) -> np.ndarray:
        return sum_y / m - (total - sum_y) / (n - m)

    observed = abs(float(gap(np.array(y_arr.sum()))))
    tol = 1e-9 * max(1.0, observed)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_ELEMENTS // n)
    hits, done = 0, 0
    while done < n_perm:
        take = min(rows, n_perm - done)
        chosen = np.argpartition(rng.random((take, n)), m - 1, axis=1)[:, :m]
        hits += int(np.sum(np.abs(gap(pooled[chosen].sum(axis=1))) >= observed - tol))
        done += take
    return min(1.0, (hits + 1) / (n_perm + 1))


def clustered_wilson_ci(
    successes: Any, trials: Any, confidence: float = 0.95
) -> tuple[float, float]:
    """Wilson interval for a share counted over clusters (e.g. judgments grouped by item).

    ``successes`` and ``trials`` are per-cluster counts. The share is sum(s) / sum(t); its
    cluster-robust (ratio) variance gives a design effect, and Wilson runs on the effective
    sample size sum(t) / deff (never above sum(t) or below the number of clusters' share).
    """
    s, t = _as_1d(successes, "successes"), _as_1d(trials, "trials")
    if s.shape != t.shape or np.any(t < 1) or np.any((s < 0) | (s > t)):
        raise ValueError("successes and trials must be per-cluster counts with 0 <= s <= t, t >= 1")
    k, total = s.size, float(t.sum())
    p = float(s.sum()) / total
    if k < 2 or p in (0.0, 1.0):
        n_eff = float(k)
    else:
        resid = s - p * t
        var = k / (k - 1) * float(resid @ resid) / total**2
        n_eff = p * (1 - p) / var if var > 0 else total
        n_eff = min(total, max(n_eff, 1.0))
    return _wilson_real(p * n_eff, n_eff, confidence)


def _wilson_real(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval with a real-valued (effective) count."""
    _check_confidence(confidence)
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, center - half)), float(min(1.0, center + half))


def mover_interval(
    estimates: Any, lows: Any, highs: Any, weights: Any, corr: Any = None
) -> tuple[float, float]:
    """Interval of sum(w * theta) from intervals of each theta (MOVER, Zou and Donner).

    Each component's own interval (e.g. Wilson for a per-class recall, honest with three
    items) sets its margin; ``corr`` (K x K, default independent) carries their dependence.
    """
    est = np.asarray(estimates, dtype=float)
    w = np.asarray(weights, dtype=float)
    down = w * np.where(w >= 0, est - np.asarray(lows), est - np.asarray(highs))
    up = w * np.where(w >= 0, np.asarray(highs) - est, np.asarray(lows) - est)
    r = np.eye(est.size) if corr is None else np.nan_to_num(np.asarray(corr, dtype=float))
    point = float(w @ est)
    low = point - float(np.sqrt(max(down @ r @ down, 0.0)))
    high = point + float(np.sqrt(max(up @ r @ up, 0.0)))
    return low, high


def sampling_spread(draws: Any) -> dict[str, float]:
    """How much of the variance of a task mean is sampling, from each item's K outputs.

    ``draws`` is an (items, K) array of one per-item metric, one column per sampled output.
    A one-way random-effects analysis: the within-item variance s_w^2 (mean of each item's
    variance over its outputs) estimates the sampling variance; the variance of the item means
    s_m^2 estimates sigma_item^2 + sigma_sampling^2 / K. ``share`` = (s_w^2 / K) / s_m^2 is the
    part of the mean's variance that more outputs per item would remove; ``narrowest`` =
    sqrt(1 - share) is how wide the interval would be with unlimited outputs, relative to now.
    """
    arr = np.asarray(draws, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2 or arr.shape[0] < 2:
        raise ValueError(f"sampling_spread needs (items >= 2, outputs >= 2), got {arr.shape}")
    k = arr.shape[1]
    within = float(arr.var(axis=1, ddof=1).mean())
    of_means = float(arr.mean(axis=1).var(ddof=1))
    share = min(1.0, within / k / of_means) if of_means > 0 else 0.0
    return {
        "repeats": float(k),
        "share": share,
        "item_sd": math.sqrt(max(0.0, of_means - within / k)),
        "sampling_sd": math.sqrt(within),
        "narrowest": math.sqrt(1.0 - share),
    }
