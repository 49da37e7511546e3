"""Paired comparison of two runs on the same items: differences with intervals and p-values.

Each metric is compared the way the run reports it. 0/1 metrics: Tango's score interval with the
exact McNemar test (made to agree). Other per-item metrics: a paired BCa interval of the mean
difference with a sign-flip permutation test (exact up to 16 items). Corpus ratios (perplexity,
bits per byte) and corpus scores (BLEU, chrF): the difference of the corpus statistics, a
paired BCa interval over items, and a test that swaps the two runs' outputs within items
(approximate randomization). The difference is always B minus A. Items whose value is missing
or not finite in either run are left out of that metric and counted in ``missing``.

Each comparison also carries its minimum detectable difference: the true difference the
two-sided test at the interval's level finds with 80% power, from the interval's standard error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel
from scipy import stats as sps

from whetstone.errors import WhetstoneError
from whetstone.evaluate.metrics import corpus_statistics
from whetstone.evaluate.statistics import (
    PairedResult,
    mean_score,
    paired_proportion_test,
    paired_ratio_interval,
    paired_sums_interval,
    paired_t_interval,
    swap_permutation_test,
)
from whetstone.metrics import METRICS, MetricSpec, apply_transform, ratio_metrics
from whetstone.records import SampleRecord

N_BOOT = 2000
# Documents from which a bits-per-byte difference gets the paired bootstrap-t interval.
STUDENTIZED_MIN_N = 30
# Random swaps of the permutation tests (exact enumeration up to 16 items needs none).
N_PERM = 10000
# Above this many items the Monte Carlo test draws fewer swaps (its p is still exact-valid).
_LARGE_N = 5000
# Per-item keys that are inputs of corpus metrics, not metrics to compare on their own.
NOT_COMPARED = frozenset({"confidence", "logprob", "n_tokens", "n_words", "n_bytes"})
#: The power the minimum detectable difference is given at.
POWER = 0.8

Pair = tuple[SampleRecord, SampleRecord]
Score = Callable[[np.ndarray], np.ndarray]


class MetricComparison(BaseModel):
    """One metric of one task in two runs: values, B - A with its interval, and a p-value."""

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
    missing: int = 0
    # the |B - A| the two-sided test finds with 80% power (None: no spread to estimate it from)
    mdd: float | None = None

    @property
    def name(self) -> str:
        """TASK/METRIC."""
        return f"{self.task}/{self.metric}"


class Comparison(BaseModel):
    """All paired metric comparisons between run A and run B."""

    run_a: str
    run_b: str
    metrics: list[MetricComparison]
    unpaired: dict[str, int]
    # the level of every interval (and of the minimum detectable differences)
    confidence: float = 0.95

    def find(self, name: str) -> MetricComparison | None:
        """The comparison of TASK/METRIC, if measured."""
        return next((m for m in self.metrics if m.name == name), None)


def standard_error(m: MetricComparison, confidence: float) -> float:
    """The standard error implied by an interval's width at ``confidence`` (normal scale)."""
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    return (m.ci_high - m.ci_low) / (2 * z)


def detectable(se: float, z_alpha: float, power: float = POWER) -> float:
    """The true difference a test rejecting beyond ``z_alpha`` standard errors finds with
    ``power`` (normal approximation)."""
    return (z_alpha + float(sps.norm.ppf(power))) * se


#: Corpus ratio metrics (perplexities, bits per byte), from the metric registry.
RATIOS: dict[str, MetricSpec] = {spec.name: spec for spec in ratio_metrics()}
#: Corpus scores recomputed from both runs' outputs.
CORPUS_SCORES = tuple(
    s.name for _, s in METRICS.items() if s.paired_test == "corpus_swap_permutation"
)


def _index(samples: list[SampleRecord], run: str) -> dict[tuple[str, str], SampleRecord]:
    """Samples by (task, id); an id seen twice in one task is refused, naming it."""
    out: dict[tuple[str, str], SampleRecord] = {}
    for s in samples:
        key = (s.task, s.id)
        if key in out:
            raise WhetstoneError(
                f"run {run}: task {s.task!r} has item id {s.id!r} twice; ids must be unique"
            )
        out[key] = s
    return out


def _pair(
    a: list[SampleRecord], b: list[SampleRecord], run_a: str, run_b: str
) -> tuple[dict[str, list[Pair]], dict[str, int]]:
    """Items present in both runs, by task; and per task how many could not be paired."""
    index_a, index_b = _index(a, run_a), _index(b, run_b)
    pairs: dict[str, list[Pair]] = {}
    for key, s in index_a.items():
        if key in index_b:
            pairs.setdefault(key[0], []).append((s, index_b[key]))
    tasks = {t for t, _ in index_a} | {t for t, _ in index_b}
    unpaired = {
        t: sum(k[0] == t for k in index_a)
        + sum(k[0] == t for k in index_b)
        - 2 * len(pairs.get(t, []))
        for t in tasks
    }
    return pairs, {t: n for t, n in unpaired.items() if n}


def _column(pairs: list[Pair], key: str) -> np.ndarray:
    """(n, 2) values of one per-item key in runs A and B; NaN where it is missing."""
    return np.array([[s.metrics.get(key, math.nan) for s in pair] for pair in pairs], dtype=float)


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def _n_perm(n: int) -> int:
    return N_PERM if n <= _LARGE_N else N_PERM // 5


@dataclass(frozen=True)
class _Settings:
    """What every comparison of one call shares: the seed and the interval level."""

    seed: int
    confidence: float


def _result(
    task: str,
    metric: str,
    a: float,
    b: float,
    r: PairedResult,
    how: _Settings,
    test: str,
    n: int,
    missing: int,
) -> MetricComparison:
    out = MetricComparison(
        task=task,
        metric=metric,
        a=a,
        b=b,
        diff=r.diff,
        ci_low=r.ci_low,
        ci_high=r.ci_high,
        p_value=r.p_value,
        test=test,
        n=n,
        missing=missing,
    )
    se = standard_error(out, how.confidence)
    if math.isfinite(se) and se > 0:
        z = float(sps.norm.ppf(1 - (1 - how.confidence) / 2))
        out.mdd = detectable(se, z)
    return out


#: Below this many items a mean difference's interval also holds the paired t-interval: BCa
#: alone is too narrow on few items (a candidate worse by exactly a gate's margin passed 6.4%
#: of the time at 5 items, 3.5% at 10 and 3.4% at 30, against the 2.5% a 95% interval allows).
T_UNION_BELOW = 100


def _compare_mean(
    task: str, metric: str, pairs: list[Pair], how: _Settings
) -> MetricComparison | None:
    """A per-item metric: McNemar/Tango for 0/1 values, else a sign-flip test of the mean."""
    values = _column(pairs, metric)
    keep = np.isfinite(values).all(axis=1)
    x, y = values[keep, 0], values[keep, 1]
    if x.size < 2:
        return None
    missing = int((~keep).sum())
    if _is_binary(x) and _is_binary(y):
        alpha = 1 - how.confidence
        result, _ = paired_proportion_test(x.astype(bool), y.astype(bool), alpha=alpha)
        test = "mcnemar_exact"
    else:
        ones = np.ones_like(x)
        stats_a, stats_b = np.stack([x, ones], axis=1), np.stack([y, ones], axis=1)
        result = _sums_result(stats_a, stats_b, mean_score, how)
        if x.size < T_UNION_BELOW:
            t_low, t_high = paired_t_interval(x, y, how.confidence)
            low, high = min(result.ci_low, t_low), max(result.ci_high, t_high)
            result = dataclasses.replace(result, ci_low=low, ci_high=high)
        test = "sign_flip"
    a, b = float(x.mean()), float(y.mean())
    return _result(task, metric, a, b, result, how, test, x.size, missing)


def _sums_result(
    stats_a: np.ndarray, stats_b: np.ndarray, score: Score, how: _Settings
) -> PairedResult:
    """Paired BCa interval and swap-permutation p-value of a statistic of summed stats."""
    diff, low, high = paired_sums_interval(
        stats_a, stats_b, score, n_boot=N_BOOT, seed=how.seed, confidence=how.confidence
    )
    n_perm = _n_perm(stats_a.shape[0])
    p = swap_permutation_test(stats_a, stats_b, score, n_perm=n_perm, seed=how.seed)
    return PairedResult(diff=diff, ci_low=low, ci_high=high, p_value=p)


def _compare_ratio(
    task: str, metric: str, pairs: list[Pair], how: _Settings
) -> MetricComparison | None:
    """A corpus ratio (sum of log-probs over sum of units) of each run, over documents."""
    ratio = RATIOS[metric]
    lp, den = _column(pairs, "logprob"), _column(pairs, str(ratio.unit))
    keep = np.isfinite(lp).all(axis=1) & np.isfinite(den).all(axis=1) & (den > 0).all(axis=1)
    if keep.sum() < 2:
        return None
    stats_a = np.stack([lp[keep, 0], den[keep, 0]], axis=1)
    stats_b = np.stack([lp[keep, 1], den[keep, 1]], axis=1)

    def score(sums: np.ndarray) -> np.ndarray:
        return np.asarray(apply_transform(ratio, sums[:, 0] / sums[:, 1]))

    a, b = (float(score(s.sum(axis=0)[None])[0]) for s in (stats_a, stats_b))
    if ratio.transform == "exp_neg" or keep.sum() < STUDENTIZED_MIN_N:
        # perplexity: the delta method is poor through exp; below 30 documents the
        # studentized interval's own error estimate is too noisy: BCa covered better there
        result = _sums_result(stats_a, stats_b, score, how)
    else:
        diff, low, high = paired_ratio_interval(
            (stats_a[:, 0], stats_a[:, 1]),
            (stats_b[:, 0], stats_b[:, 1]),
            lambda r: np.asarray(apply_transform(ratio, r)),
            n_boot=N_BOOT,
            seed=how.seed,
            confidence=how.confidence,
        )
        n_perm = _n_perm(stats_a.shape[0])
        p = swap_permutation_test(stats_a, stats_b, score, n_perm=n_perm, seed=how.seed)
        result = PairedResult(diff=diff, ci_low=low, ci_high=high, p_value=p)
    n, missing = int(keep.sum()), int((~keep).sum())
    return _result(task, metric, a, b, result, how, "ratio_swap_permutation", n, missing)


def _common_repeats(pairs: list[Pair]) -> int:
    """Outputs per item both runs have for every item (sampled repeats), else 1."""
    counts = {len(s.extra.get("outputs") or [None]) for pair in pairs for s in pair}
    return counts.pop() if len(counts) == 1 else 1


def _outputs(s: SampleRecord, k: int) -> list[str]:
    """An item's k outputs as scored (stripped), or its prediction."""
    return [str(o).strip() for o in s.extra["outputs"]] if k > 1 else [str(s.prediction)]


def _item_statistics(
    metric: str, outputs: list[list[str]], refs: list[list[str]]
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Per-item corpus statistics summed over each item's outputs (one corpus of them all)."""
    k = len(outputs[0])
    flat = [o for item in outputs for o in item]
    stats, score = corpus_statistics(metric, flat, [r for r in refs for _ in range(k)])
    return stats.reshape(len(outputs), k, -1).sum(axis=1), score


def _compare_corpus(
    task: str, metric: str, pairs: list[Pair], how: _Settings
) -> MetricComparison | None:
    """A corpus score (BLEU, chrF) recomputed from both runs' outputs and the references."""
    keep = [p for p in pairs if all(isinstance(s.prediction, str) and s.gold for s in p)]
    if len(keep) < 2:
        return None
    refs = [list(p[0].gold) if isinstance(p[0].gold, list) else [str(p[0].gold)] for p in keep]
    k = _common_repeats(keep)
    stats_a, score = _item_statistics(metric, [_outputs(p[0], k) for p in keep], refs)
    stats_b, _ = _item_statistics(metric, [_outputs(p[1], k) for p in keep], refs)
    a, b = (float(score(s.sum(axis=0)[None])[0]) for s in (stats_a, stats_b))
    result = _sums_result(stats_a, stats_b, score, how)
    missing = len(pairs) - len(keep)
    test = "corpus_swap_permutation"
    return _result(task, metric, a, b, result, how, test, len(keep), missing)


def _metric_names(pairs: list[Pair]) -> list[str]:
    """Every per-item metric any item of either run has (not only the first item's)."""
    names = {k for pair in pairs for s in pair for k in s.metrics}
    return sorted(names - NOT_COMPARED)


def _compare_task(
    task: str, pairs: list[Pair], how: _Settings, only: Collection[str] | None
) -> list[MetricComparison]:
    """Every metric of one task (or those of ``only``), each compared as the run reports it."""

    def wanted(metric: str) -> bool:
        return only is None or f"{task}/{metric}" in only

    names = [m for m in _metric_names(pairs) if wanted(m)]
    keys = {k for pair in pairs for s in pair for k in s.metrics}
    found: list[MetricComparison | None] = []
    if "logprob" in keys:
        ratios = [m for m in RATIOS if RATIOS[m].unit in keys and wanted(m)]
        found += [_compare_ratio(task, m, pairs, how) for m in ratios]
        names = [m for m in names if m not in RATIOS]
    for metric in names:
        corpus = metric in CORPUS_SCORES and any(isinstance(p[0].prediction, str) for p in pairs)
        compare = _compare_corpus if corpus else _compare_mean
        found.append(compare(task, metric, pairs, how))
    return [m for m in found if m is not None]


def compare_samples(
    a: list[SampleRecord],
    b: list[SampleRecord],
    *,
    run_a: str = "A",
    run_b: str = "B",
    seed: int = 0,
    confidence: float = 0.95,
    only: Collection[str] | None = None,
) -> Comparison:
    """Compare two runs' samples item by item (B - A) for every metric either run has (or the
    TASK/METRIC names of ``only``), with intervals at ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    pairs, unpaired = _pair(a, b, run_a, run_b)
    if not pairs:
        raise WhetstoneError(f"runs {run_a} and {run_b} share no (task, item id): nothing to pair")
    how = _Settings(seed, confidence)
    out = [m for t, items in sorted(pairs.items()) for m in _compare_task(t, items, how, only)]
    return Comparison(
        run_a=run_a, run_b=run_b, metrics=out, unpaired=unpaired, confidence=confidence
    )
