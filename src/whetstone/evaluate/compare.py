"""Paired comparison of two runs on the same items: differences with intervals and p-values.

Accuracy-like (0/1) metrics use McNemar's exact test; other per-item metrics a paired
bootstrap of the mean; perplexity tasks a paired bootstrap of the corpus-level ratio over
documents. The difference is always B minus A.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel

from whetstone.errors import WhetstoneError
from whetstone.evaluate.statistics import (
    bootstrap_distribution,
    bootstrap_p_value,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
)
from whetstone.records import SampleRecord

N_BOOT = 2000


class MetricComparison(BaseModel):
    """One metric of one task in two runs: values, B - A with its 95% interval, and a p-value."""

    task: str
    metric: str
    a: float
    b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    n: int


class Comparison(BaseModel):
    """All paired metric comparisons between run A and run B."""

    run_a: str
    run_b: str
    metrics: list[MetricComparison]
    unpaired: dict[str, int]


def _pair(
    a: list[SampleRecord], b: list[SampleRecord]
) -> tuple[dict[str, list[tuple[SampleRecord, SampleRecord]]], dict[str, int]]:
    """Items present in both runs, by task; and per task how many could not be paired."""
    index = {(s.task, s.id): s for s in b}
    pairs: dict[str, list[tuple[SampleRecord, SampleRecord]]] = {}
    for s in a:
        other = index.get((s.task, s.id))
        if other is not None:
            pairs.setdefault(s.task, []).append((s, other))
    tasks = {s.task for s in a} | {s.task for s in b}
    unpaired = {
        t: sum(1 for s in a if s.task == t)
        + sum(1 for s in b if s.task == t)
        - 2 * len(pairs.get(t, []))
        for t in tasks
    }
    return pairs, {t: n for t, n in unpaired.items() if n}


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _compare_metric(
    task: str, metric: str, x: np.ndarray, y: np.ndarray, seed: int
) -> MetricComparison:
    boot = paired_bootstrap(x, y, n_boot=N_BOOT, seed=seed)
    if _is_binary(x) and _is_binary(y):
        p, test = mcnemar_exact(x.astype(bool), y.astype(bool)).p_value, "mcnemar_exact"
    else:
        p, test = boot.p_value, "paired_bootstrap"
    return MetricComparison(
        task=task,
        metric=metric,
        a=float(x.mean()),
        b=float(y.mean()),
        diff=boot.diff,
        ci_low=boot.ci_low,
        ci_high=boot.ci_high,
        p_value=p,
        test=test,
        n=len(x),
    )


RATIOS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "perplexity": ("n_tokens", lambda r: np.exp(-r)),
    "bits_per_byte": ("n_bytes", lambda r: -r / math.log(2)),
}


def _compare_ratio(
    task: str, metric: str, pairs: list[tuple[SampleRecord, SampleRecord]], seed: int
) -> MetricComparison:
    """A corpus-level metric (sum of log-probs over sum of units), bootstrapped over documents."""
    unit, transform = RATIOS[metric]
    cols = {
        k: np.array([[s.metrics[k] for s in pair] for pair in pairs], dtype=float)
        for k in ("logprob", unit)
    }
    lp, den = cols["logprob"], cols[unit]

    def value(rows: np.ndarray, side: int) -> np.ndarray:
        return transform(lp[rows, side].sum(axis=-1) / den[rows, side].sum(axis=-1))

    a, b = float(value(np.arange(len(pairs)), 0)), float(value(np.arange(len(pairs)), 1))
    dist = bootstrap_distribution(
        len(pairs), lambda idx: value(idx, 1) - value(idx, 0), n_boot=N_BOOT, seed=seed
    )
    low, high = percentile_interval(dist)
    return MetricComparison(
        task=task,
        metric=metric,
        a=a,
        b=b,
        diff=b - a,
        ci_low=float(low),
        ci_high=float(high),
        p_value=bootstrap_p_value(dist),
        test="paired_bootstrap",
        n=len(pairs),
    )


def compare_samples(
    a: list[SampleRecord],
    b: list[SampleRecord],
    *,
    run_a: str = "A",
    run_b: str = "B",
    seed: int = 0,
) -> Comparison:
    """Compare two runs' samples item by item (B - A) for every metric both runs have."""
    pairs, unpaired = _pair(a, b)
    if not pairs:
        raise WhetstoneError(f"runs {run_a} and {run_b} share no (task, item id): nothing to pair")
    out: list[MetricComparison] = []
    for task, items in sorted(pairs.items()):
        keys = set(items[0][0].metrics) & set(items[0][1].metrics)
        if {"logprob", "n_bytes", "n_tokens"} <= keys:
            out += [_compare_ratio(task, m, items, seed) for m in RATIOS]
            continue
        for metric in sorted(keys):
            x = np.array([p[0].metrics.get(metric, np.nan) for p in items], dtype=float)
            y = np.array([p[1].metrics.get(metric, np.nan) for p in items], dtype=float)
            keep = ~(np.isnan(x) | np.isnan(y))
            if keep.sum() >= 2:
                out.append(_compare_metric(task, metric, x[keep], y[keep], seed))
    return Comparison(run_a=run_a, run_b=run_b, metrics=out, unpaired=unpaired)
