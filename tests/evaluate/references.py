"""Textbook statistics written out with loops, as independent references for the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as sps


def expanded_tail(n: int) -> float:
    """Hesterberg's expanded 2.5% tail: Phi(-sqrt(n / (n - 1)) * t(0.975, n - 1))."""
    return float(sps.norm.cdf(-np.sqrt(n / (n - 1)) * sps.t.ppf(0.975, n - 1)))


def textbook_bca(
    theta: float, replicates: Sequence[float], leave_one_out: Sequence[float], tail: float
) -> np.ndarray:
    """Efron's BCa from replicates and jackknife values, with loops and scipy's normal."""
    reps = np.asarray(replicates, dtype=float)
    share = (sum(r < theta for r in reps) + 0.5 * sum(r == theta for r in reps)) / len(reps)
    z0 = sps.norm.ppf(share)
    jack = np.asarray(leave_one_out, dtype=float)
    dev = jack.mean() - jack
    a = (dev**3).sum() / (6 * (dev**2).sum() ** 1.5)
    z = sps.norm.ppf([tail, 1 - tail])
    return np.quantile(reps, sps.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z))))


def bca_of(
    values: Sequence[object], statistic: Callable[[list[object]], float], draws: np.ndarray
) -> np.ndarray:
    """BCa with expanded tails of statistic over the resamples ``draws`` (rows of indices)."""
    items = list(values)
    reps = [statistic([items[j] for j in row]) for row in draws]
    jack = [statistic(items[:i] + items[i + 1 :]) for i in range(len(items))]
    return textbook_bca(statistic(items), reps, jack, expanded_tail(len(items)))
