"""Inter-annotator agreement: Cohen's kappa per pair of raters, Fleiss' kappa, Krippendorff's
alpha with a bootstrap interval, and per-rater agreement with the others.

The data is a mapping unit -> {rater: value}. Cohen's kappa is computed for every pair of raters
on the units both judged (as scikit-learn's ``cohen_kappa_score``, optionally weighted) and
averaged (Light's kappa). Fleiss' kappa takes the units with at least two ratings and allows
their number to vary (with a constant number it is exactly Fleiss' 1971 statistic, as
statsmodels computes it). Krippendorff's alpha is computed from the coincidence matrix for
nominal, ordinal or interval data (missing values allowed); its interval is a BCa bootstrap over
units (or over the clusters units belong to), withheld below MIN_UNITS of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from whetstone.evaluate.statistics import bca_interval, resample_counts, resample_indices
from whetstone.records import MetricValue

Level = Literal["nominal", "ordinal", "interval"]
Weights = Literal["linear", "quadratic"] | None
Ratings = Mapping[Hashable, Mapping[str, Hashable]]
"""unit -> {rater: value}"""


class PairKappa(BaseModel):
    """Cohen's kappa of two raters over the units both judged."""

    rater_a: str
    rater_b: str
    n: int
    kappa: float | None
    weighted_kappa: float | None = None


class RaterAgreement(BaseModel):
    """How often a rater's value equals another rater's on the same unit."""

    rater: str
    pairs: int
    agreement: float | None


class Agreement(BaseModel):
    """Agreement on one question across a campaign's raters."""

    question: str
    level: Level
    categories: list[str]
    units: int
    """Units with at least two ratings (the ones that carry information on agreement)."""
    ratings: int
    raters: int
    percent_agreement: float | None
    cohen_kappa: float | None
    """Mean of the pairwise Cohen's kappas (Light's kappa)."""
    cohen_weighted_kappa: float | None = None
    """Mean pairwise quadratic-weighted kappa (ordinal questions)."""
    cohen_pairs: list[PairKappa]
    fleiss_kappa: float | None
    krippendorff_alpha: MetricValue | None
    per_rater: list[RaterAgreement]


def _weight_matrix(k: int, weights: Weights) -> np.ndarray:
    """Disagreement weights between category indices."""
    i, j = np.indices((k, k))
    if weights is None:
        return (i != j).astype(float)
    if weights == "linear":
        return np.abs(i - j).astype(float)
    if weights == "quadratic":
        return ((i - j) ** 2).astype(float)
    raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
    weights: Weights = None,
) -> float | None:
    """Cohen's kappa of two raters' labels (None when chance agreement is perfect).

    Weighted kappa orders the categories as ``labels`` (default: sorted values).
    """
    if len(a) != len(b):
        raise ValueError("both raters need a label for each unit")
    if not a:
        return None
    cats = list(labels) if labels is not None else sorted(set(a) | set(b), key=str)
    index = {c: k for k, c in enumerate(cats)}
    k = len(cats)
    confusion = np.zeros((k, k))
    np.add.at(confusion, ([index[x] for x in a], [index[y] for y in b]), 1.0)
    n = confusion.sum()
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / n
    w = _weight_matrix(k, weights)
    denominator = float(np.sum(w * expected))
    if denominator == 0.0:
        return None
    return 1.0 - float(np.sum(w * confusion)) / denominator


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa of a (units x categories) table of counts; rows need two or more ratings.

    With the same number of ratings per unit this is Fleiss (1971); with varying numbers each
    unit's agreement is computed over its own pairs of ratings.
    """
    t = np.asarray(table, dtype=float)
    m = t.sum(axis=1)
    if t.size == 0 or np.any(m < 2):
        raise ValueError("every unit needs at least two ratings")
    per_unit = (np.sum(t * t, axis=1) - m) / (m * (m - 1))
    p_cat = t.sum(axis=0) / t.sum()
    expected = float(np.sum(p_cat**2))
    if expected == 1.0:
        return None
    return (float(per_unit.mean()) - expected) / (1.0 - expected)


def _pairable_parts(
    ratings: Ratings, categories: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Value counts and coincidence matrices of the pairable units, and those units' keys."""
    index = {c: k for k, c in enumerate(categories)}
    c = len(categories)
    if c == 0:
        return np.zeros((0, 0)), np.zeros((0, 0)), []
    counts, keys = [], []
    for unit, values in ratings.items():
        if len(values) < 2:
            continue
        row = np.zeros(c)
        for v in values.values():
            row[index[v]] += 1
        counts.append(row)
        keys.append(unit)
    n_u = np.array(counts).reshape(-1, c)
    m = n_u.sum(axis=1)
    outer = n_u[:, :, None] * n_u[:, None, :]
    diag = np.einsum("uc,cd->ucd", n_u, np.eye(c))
    parts = (outer - diag) / (m - 1)[:, None, None]
    return n_u, parts.reshape(len(n_u), c * c), keys


def _delta(level: Level, categories: Sequence[Hashable], n_c: np.ndarray) -> np.ndarray:
    """Squared distances between values; ``n_c`` (B, c) are the value totals (ordinal)."""
    c = len(categories)
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(c), (n_c.shape[0], c, c))
    if level == "interval":
        v = np.asarray(categories, dtype=float)
        return np.broadcast_to((v[:, None] - v[None, :]) ** 2, (n_c.shape[0], c, c))
    cum = np.concatenate([np.zeros((n_c.shape[0], 1)), np.cumsum(n_c, axis=1)], axis=1)
    i, j = np.indices((c, c))
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    between = cum[:, hi + 1] - cum[:, lo]
    return (between - (n_c[:, i] + n_c[:, j]) / 2.0) ** 2


def _alpha_from(o: np.ndarray, level: Level, categories: Sequence[Hashable]) -> np.ndarray:
    """Alpha for each coincidence matrix in ``o`` (B, c, c); NaN where undefined."""
    n_c = o.sum(axis=2)
    n = n_c.sum(axis=1)
    delta = _delta(level, categories, n_c)
    observed = np.sum(o * delta, axis=(1, 2))
    expected = np.sum(n_c[:, :, None] * n_c[:, None, :] * delta, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1.0 - (n - 1) * observed / expected, np.nan)


def _sorted_categories(ratings: Ratings, level: Level) -> list[Hashable]:
    """The values that occur, in order (numeric order for ordinal and interval data)."""
    values = {v for unit in ratings.values() for v in unit.values()}
    if level == "nominal":
        return sorted(values, key=str)
    return sorted(values, key=float)  # type: ignore[arg-type]


def krippendorff_alpha(ratings: Ratings, level: Level = "nominal") -> float | None:
    """Krippendorff's alpha of unit -> {rater: value} data (None when undefined)."""
    categories = _sorted_categories(ratings, level)
    _, parts, _ = _pairable_parts(ratings, categories)
    if len(parts) == 0:
        return None
    c = len(categories)
    value = float(_alpha_from(parts.sum(axis=0).reshape(1, c, c), level, categories)[0])
    return None if np.isnan(value) else value


#: Fewest independent units (clusters) for a bootstrap interval of alpha; five units covered
#: about 85%, ten about 95% (BCa; the percentile interval covered 82% and 89%).
MIN_UNITS = 10


def _cluster_parts(
    parts: np.ndarray, keys: Sequence[Hashable], clusters: Mapping[Hashable, Hashable] | None
) -> np.ndarray:
    """Coincidence matrices summed over each cluster of units (alpha's data are additive)."""
    if clusters is None:
        return parts
    labels = [clusters.get(k, ("unit", k)) for k in keys]
    codes = {c: i for i, c in enumerate(dict.fromkeys(labels))}
    out = np.zeros((len(codes), parts.shape[1]))
    np.add.at(out, [codes[c] for c in labels], parts)
    return out


def _alpha_interval(
    parts: np.ndarray, point: float, level: Level, categories: Sequence[Hashable], **boot: Any
) -> tuple[float, float] | None:
    """BCa interval of alpha over resampled clusters (leave-one-cluster-out acceleration);
    resamples where alpha is undefined are left out. None when no resample defines it."""
    c = len(categories)
    dists = [
        _alpha_from((resample_counts(idx, len(parts)) @ parts).reshape(-1, c, c), level, categories)
        for idx in resample_indices(len(parts), n_boot=boot["n_boot"], seed=boot["seed"])
    ]
    dist = np.concatenate(dists)
    jack = _alpha_from((parts.sum(axis=0)[None, :] - parts).reshape(-1, c, c), level, categories)
    dist, jack = dist[np.isfinite(dist)], jack[np.isfinite(jack)]
    if dist.size == 0 or jack.size == 0:
        return None
    low, high = bca_interval(point, dist, jack, len(parts), boot["confidence"])
    return float(low), float(high)


def krippendorff_alpha_ci(
    ratings: Ratings,
    level: Level = "nominal",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    clusters: Mapping[Hashable, Hashable] | None = None,
) -> MetricValue | None:
    """Alpha with a BCa bootstrap interval over units; None when alpha itself is undefined.

    ``clusters`` maps a unit to the independent unit it belongs to (e.g. the item of an
    (item, model) unit): whole clusters are then resampled. With fewer than MIN_UNITS
    clusters, or no resample where alpha is defined, the interval is withheld (``too_few``).
    """
    categories = _sorted_categories(ratings, level)
    _, parts, keys = _pairable_parts(ratings, categories)
    if len(parts) == 0:
        return None
    c = len(categories)
    point = float(_alpha_from(parts.sum(axis=0).reshape(1, c, c), level, categories)[0])
    if np.isnan(point):
        return None
    grouped = _cluster_parts(parts, keys, clusters)
    unit = "cluster" if clusters is not None else "unit"
    base = {"value": point, "n": len(parts), "method": "bca"}
    if len(grouped) < MIN_UNITS:
        note = f"{len(grouped)} {unit}(s) rated twice or more: an interval needs {MIN_UNITS}"
        return MetricValue(**base, too_few=True, note=note)
    ends = _alpha_interval(
        grouped, point, level, categories, n_boot=n_boot, seed=seed, confidence=confidence
    )
    if ends is None:
        note = "alpha is undefined in every resample (no spread of values)"
        return MetricValue(**base, too_few=True, note=note)
    return MetricValue(**base, ci_low=ends[0], ci_high=ends[1])


def pairwise_kappas(
    ratings: Ratings, labels: Sequence[Hashable], weighted: bool = False, min_shared: int = 2
) -> list[PairKappa]:
    """Cohen's kappa for every pair of raters who share at least ``min_shared`` units."""
    by_rater: dict[str, dict[Hashable, Hashable]] = {}
    for unit, values in ratings.items():
        for rater, value in values.items():
            by_rater.setdefault(rater, {})[unit] = value
    out = []
    for ra, rb in itertools.combinations(sorted(by_rater), 2):
        shared = [u for u in by_rater[ra] if u in by_rater[rb]]
        if len(shared) < min_shared:
            continue
        a = [by_rater[ra][u] for u in shared]
        b = [by_rater[rb][u] for u in shared]
        out.append(
            PairKappa(
                rater_a=ra,
                rater_b=rb,
                n=len(shared),
                kappa=cohen_kappa(a, b, labels),
                weighted_kappa=cohen_kappa(a, b, labels, "quadratic") if weighted else None,
            )
        )
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the defined values, or None."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def rater_agreement(ratings: Ratings) -> list[RaterAgreement]:
    """For each rater, the share of (their value, another rater's value) pairs that agree."""
    hits: dict[str, list[int]] = {}
    for values in ratings.values():
        for ra, rb in itertools.permutations(values, 2):
            hits.setdefault(ra, []).append(int(values[ra] == values[rb]))
    raters = sorted({r for values in ratings.values() for r in values})
    return [
        RaterAgreement(
            rater=r,
            pairs=len(hits.get(r, [])),
            agreement=float(np.mean(hits[r])) if hits.get(r) else None,
        )
        for r in raters
    ]


def agreement(
    question: str,
    ratings: Ratings,
    level: Level = "nominal",
    *,
    n_boot: int = 1000,
    seed: int = 0,
    clusters: Mapping[Hashable, Hashable] | None = None,
) -> Agreement:
    """Every agreement statistic of one question (``clusters``: see krippendorff_alpha_ci)."""
    categories = _sorted_categories(ratings, level)
    shared = {u: v for u, v in ratings.items() if len(v) >= 2}
    pairs = pairwise_kappas(ratings, categories, weighted=level != "nominal")
    fleiss = None
    percent = None
    if shared:
        index = {c: k for k, c in enumerate(categories)}
        table = np.zeros((len(shared), len(categories)))
        for row, values in enumerate(shared.values()):
            for v in values.values():
                table[row, index[v]] += 1
        fleiss = fleiss_kappa(table)
        m = table.sum(axis=1)
        percent = float(np.mean((np.sum(table * table, axis=1) - m) / (m * (m - 1))))
    return Agreement(
        question=question,
        level=level,
        categories=[str(c) for c in categories],
        units=len(shared),
        ratings=sum(len(v) for v in ratings.values()),
        raters=len({r for values in ratings.values() for r in values}),
        percent_agreement=percent,
        cohen_kappa=_mean([p.kappa for p in pairs]),
        cohen_weighted_kappa=_mean([p.weighted_kappa for p in pairs])
        if level != "nominal"
        else None,
        cohen_pairs=pairs,
        fleiss_kappa=fleiss,
        krippendorff_alpha=krippendorff_alpha_ci(
            ratings, level, n_boot=n_boot, seed=seed, clusters=clusters
        ),
        per_rater=rater_agreement(ratings),
    )
