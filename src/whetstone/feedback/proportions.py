"""Shares of judgments with intervals that respect what the independent unit is.

Judgments of one item (or verdicts of one participant) correlate, so a share counted over
judgments gets a Wilson interval on the effective sample size of its clusters (the design
effect from the cluster-robust variance); counting the judgments as independent covered about
80% with three judges per item. Where every cluster holds one judgment this is Wilson itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from whetstone.evaluate.statistics import clustered_wilson_ci, wilson_ci
from whetstone.records import MetricValue

__all__ = ["MIN_CLUSTERS", "cluster_counts", "share_by_cluster"]

#: Fewest clusters (items, participants) for an interval of a share over them.
MIN_CLUSTERS = 2


def cluster_counts(
    hits: Sequence[bool], clusters: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster successes and trials, clusters in order of first appearance."""
    codes = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    index = np.array([codes[c] for c in clusters], dtype=int)
    weights = np.asarray(hits, dtype=float)
    successes = np.bincount(index, weights=weights, minlength=len(codes))
    trials = np.bincount(index, minlength=len(codes)).astype(float)
    return successes, trials


def share_by_cluster(
    hits: Sequence[bool], clusters: Sequence[Hashable], unit: str = "item"
) -> MetricValue | None:
    """The share of ``hits`` with a 95% interval over ``clusters`` (None without judgments).

    Wilson when every cluster holds one judgment; the clustered Wilson interval otherwise;
    ``too_few`` (no interval, a note) with fewer than MIN_CLUSTERS clusters, where the spread
    between clusters cannot be estimated.
    """
    if len(hits) == 0:
        return None
    if len(hits) != len(clusters):
        raise ValueError("hits and clusters must have the same length")
    value, n = float(np.mean(np.asarray(hits, dtype=float))), len(hits)
    successes, trials = cluster_counts(hits, clusters)
    if trials.size == n:
        lo, hi = wilson_ci(int(successes.sum()), n)
        return MetricValue(value=value, ci_low=lo, ci_high=hi, n=n, method="wilson")
    if trials.size < MIN_CLUSTERS:
        note = f"{trials.size} {unit}(s): an interval over {unit}s needs {MIN_CLUSTERS}"
        return MetricValue(value=value, n=n, method="clustered_wilson", too_few=True, note=note)
    lo, hi = clustered_wilson_ci(successes, trials)
    return MetricValue(value=value, ci_low=lo, ci_high=hi, n=n, method="clustered_wilson")
