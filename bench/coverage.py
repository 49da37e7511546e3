"""Coverage and size of every interval and test, by Monte Carlo simulation with known truth.

Each routine draws data sets from a process whose true value is known, hands them to
whetstone's own functions (never a copy of them, so the same script measures the code before
and after a change) and records, per reported row, whether the 95% interval covered the truth
(coverage) or whether a test rejected a true null at alpha 0.05 (size). A result whose
``too_few`` is set or whose interval ends are None is counted apart ("too few") and coverage
is over the runs that gave an interval; a point interval (low == high) is counted as well.
Every figure comes with its Monte Carlo standard error. ``docs`` of each routine below give
the generating process, the truth and the functions called.

    .venv/bin/python bench/coverage.py [--reps 500] [--reps-large 100]
        [--sizes 5,10,30,100,1000] [--routines ece_calibrated,macro_rare,...]
        [--workers 2] [--out bench/results/coverage.md] [--label TEXT] [--list]

``PYTHONPATH=/elsewhere/src`` measures another checkout's code; the header names the
whetstone it imported.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "coverage.md"
ALPHA = 0.05
SIZES = (5, 10, 30, 100, 1000)
#: The "too few" routines run at these sizes whatever --sizes says.
FLAG_SIZES = (1, 2, 3)
#: Cells at n >= LARGE use --reps-large data sets instead of --reps.
LARGE = 1000
#: Targets by kind: coverage at least, size and disagreement at most, no point interval.
TARGETS = {"coverage": 0.93, "size": 0.055, "disagree": 0.0, "flag": 0.0}


@dataclass(frozen=True)
class Outcome:
    """One simulated data set, one reported row.

    hit: 1/0 (covered, rejected, disagreed), a number (spread), or None: no interval/p-value.
    """

    hit: float | None
    flagged: bool = False
    point: bool = False


Rows = dict[str, Outcome]
Simulation = Callable[[np.random.Generator, int], Rows]


@dataclass(frozen=True)
class Row:
    """A reported row: what it measures and from which n its target must hold."""

    name: str
    kind: str  # coverage | size | disagree | flag | spread
    holds_from: int = 10
    target: float | None = None  # None: TARGETS[kind] (spread: no target)

    @property
    def goal(self) -> float | None:
        return self.target if self.target is not None else TARGETS.get(self.kind)


@dataclass(frozen=True)
class Spec:
    """A simulation: the rows it reports, how many data sets it gets (a share of --reps)."""

    fn: Simulation
    rows: tuple[Row, ...]
    process: str
    truth: str
    calls: str
    cost: float = 1.0
    sizes: tuple[int, ...] | None = None  # fixed sizes (the too-few checks)


# --------------------------------------------------------------------------- outcomes


def _ends(m: Any) -> tuple[float, float] | None:
    """An interval's ends, or None when the result has none or is flagged too_few."""
    if m is None or getattr(m, "too_few", False):
        return None
    low, high = getattr(m, "ci_low", None), getattr(m, "ci_high", None)
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return None
    return float(low), float(high)


def _is_point(low: float, high: float) -> bool:
    return high - low <= 1e-12 * max(1.0, abs(low))


def covers(m: Any, truth: float) -> Outcome:
    """Whether an interval (MetricValue, MetricComparison, ...) contains the truth."""
    ends = _ends(m)
    if ends is None:
        return Outcome(None, flagged=True)
    low, high = ends
    return Outcome(float(low <= truth <= high), point=_is_point(low, high))


def rejects(p: float | None) -> Outcome:
    """Whether a p-value rejects at ALPHA (None: the routine gave no test)."""
    if p is None or not math.isfinite(p):
        return Outcome(None, flagged=True)
    return Outcome(float(p < ALPHA))


def disagrees(m: Any) -> Outcome:
    """Whether 'p < alpha' and 'the interval printed beside it excludes 0' disagree."""
    ends, p = _ends(m), getattr(m, "p_value", None)
    if ends is None or p is None:
        return Outcome(None, flagged=True)
    excludes = ends[0] > 0 or ends[1] < 0
    return Outcome(float((p < ALPHA) != excludes))


def flag_check(m: Any) -> Outcome:
    """For the too-few checks: flagged (no interval), a point interval, or an interval."""
    ends = _ends(m)
    if ends is None:
        return Outcome(None, flagged=True)
    return Outcome(0.0, point=_is_point(*ends))


def _metric(aggregates: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` the aggregates have (metrics get renamed: f1 -> f1_macro)."""
    return next((aggregates[n] for n in names if n in aggregates), None)


def _put(rows: Rows, name: str, outcome: Outcome | None) -> None:
    if outcome is not None:
        rows[name] = outcome


def _seeded(seed: int, name: str, n: int) -> np.random.Generator:
    return np.random.default_rng([seed, n, zlib.crc32(name.encode())])


# --------------------------------------------------------------------------- 1. calibration


@dataclass(frozen=True)
class Calibration:
    """Top-choice confidence of a K-way multiple-choice model and its accuracy curve."""

    k: int
    dist: str  # "uniform" on [1/k, 1), or "beta": 1/k + (1 - 1/k) Beta(a, b)
    a: float = 1.0
    b: float = 1.0
    bend: float = 1.0  # accuracy 1/k + (1 - 1/k) u**bend, u the confidence rescaled to [0, 1]
    slope: float = 1.0  # ... times slope, around the midpoint (overconfidence when < 1)

    def confidence(self, rng: np.random.Generator, n: int) -> np.ndarray:
        u = rng.random(n) if self.dist == "uniform" else rng.beta(self.a, self.b, n)
        return self._scale(np.clip(u, 1e-9, 1 - 1e-9))

    def _scale(self, u: np.ndarray) -> np.ndarray:
        return 1 / self.k + (1 - 1 / self.k) * u

    def accuracy(self, c: np.ndarray) -> np.ndarray:
        u = (c - 1 / self.k) / (1 - 1 / self.k)
        curved = u**self.bend
        return self._scale(np.clip(0.5 + self.slope * (curved - 0.5), 0, 1))

    def population_ece(self, grid: int = 400_000) -> float:
        """sum over whetstone's 10 equal-width bins of P(bin) |E[accuracy - confidence | bin]|,
        by integration over the quantiles of the confidence distribution."""
        from scipy import stats

        q = (np.arange(grid) + 0.5) / grid
        u = q if self.dist == "uniform" else stats.beta.ppf(q, self.a, self.b)
        c = self._scale(u)
        bins = np.digitize(c, np.arange(1, 10) / 10, right=True)
        gap = np.bincount(bins, weights=self.accuracy(c) - c, minlength=10)
        return float(np.abs(gap).sum() / grid)


CALIBRATIONS = {
    "ece_calibrated": Calibration(k=4, dist="uniform"),
    "ece_calibrated_skewed": Calibration(k=2, dist="beta", a=4.0, b=1.0),
    "ece_miscalibrated": Calibration(k=4, dist="uniform", bend=1.5),
    "ece_miscalibrated_skewed": Calibration(k=2, dist="beta", a=4.0, b=1.0, slope=0.8),
}


@cache
def true_ece(name: str) -> float:
    return CALIBRATIONS[name].population_ece()


def _ece(name: str) -> Simulation:
    cal = CALIBRATIONS[name]

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.metrics import multiple_choice_metrics

        c = cal.confidence(rng, n)
        correct = rng.random(n) < cal.accuracy(c)
        rest = np.log((1 - c) / (cal.k - 1))
        lls = np.column_stack([np.log(c)] + [rest] * (cal.k - 1))
        gold = np.where(correct, 0, 1)  # the other choices are alike: any wrong one will do
        aggregates, _ = multiple_choice_metrics(
            lls.tolist(), [[1] * cal.k] * n, [int(g) for g in gold]
        )
        truth = true_ece(name)
        rows: Rows = {}
        for metric in ("ece", "ece_debiased"):
            m = aggregates.get(metric)
            _put(rows, metric, None if m is None else covers(m, truth))
        return rows

    return simulate


# --------------------------------------------------------------------------- 2. macro metrics


@dataclass(frozen=True)
class Confusion:
    """Gold labels from a prior, predictions from a row-stochastic confusion matrix."""

    prior: tuple[float, ...]
    confusion: tuple[tuple[float, ...], ...]

    def truth(self) -> dict[str, float]:
        joint = np.asarray(self.prior)[:, None] * np.asarray(self.confusion)
        tp, gold, pred = np.diag(joint), joint.sum(axis=1), joint.sum(axis=0)
        return {
            "recall_macro": float(np.mean(tp / gold)),
            "precision_macro": float(np.mean(tp / pred)),
            "f1_macro": float(np.mean(2 * tp / (gold + pred))),
        }

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        gold = rng.choice(len(self.prior), size=n, p=self.prior)
        cum = np.cumsum(np.asarray(self.confusion), axis=1)
        pred = (rng.random(n)[:, None] > cum[gold]).sum(axis=1)
        return gold, np.minimum(pred, len(self.prior) - 1)


CONFUSIONS = {
    "macro_rare": Confusion(
        (0.57, 0.40, 0.03), ((0.85, 0.075, 0.075), (0.1, 0.8, 0.1), (0.15, 0.15, 0.7))
    ),
    "macro_balanced": Confusion(
        (0.25,) * 4, tuple(tuple(0.7 if i == j else 0.1 for j in range(4)) for i in range(4))
    ),
}
MACRO = ("f1_macro", "recall_macro", "precision_macro")


def _macro(name: str) -> Simulation:
    conf = CONFUSIONS[name]
    truth = conf.truth()

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.metrics import classification_metrics

        gold, pred = conf.draw(rng, n)
        labels = [str(k) for k in range(len(conf.prior))]
        aggregates, _, _ = classification_metrics(
            [labels[g] for g in gold], [labels[p] for p in pred], labels
        )
        rows: Rows = {}
        for metric in MACRO:
            m = _metric(aggregates, metric, metric.removesuffix("_macro"))
            _put(rows, metric, None if m is None else covers(m, truth[metric]))
        return rows

    return simulate


# --------------------------------------------------------------------------- 3-4. perplexity


@dataclass(frozen=True)
class Corpus:
    """Documents of lognormal length in tokens, 3-5 bytes a token, a difficulty per document
    (gamma, mean ``nats`` a token, tilted by length: tilt < 0 makes long documents easier)
    and token-level noise of 1 nat a token around it."""

    median_tokens: float = 600.0
    sigma: float = 0.8
    shape: float = 4.0
    tilt: float = 0.0
    nats: float = 2.5

    def draw(
        self, rng: np.random.Generator, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """tokens, words, bytes and the expected negative log-likelihood of each document."""
        z = rng.standard_normal(n)
        tokens = np.maximum(10.0, np.rint(self.median_tokens * np.exp(self.sigma * z)))
        nbytes = np.rint(tokens * (3 + 2 * rng.beta(2, 2, n)))
        words = np.maximum(1.0, np.rint(nbytes / 5.5))
        tilt = np.exp(self.tilt * z - self.tilt**2 / 2)
        difficulty = self.nats * rng.gamma(self.shape, 1 / self.shape, n) * tilt
        return tokens, words, nbytes, tokens * difficulty

    def run(
        self, rng: np.random.Generator, tokens: np.ndarray, nll: np.ndarray, scale: float = 1.0
    ) -> np.ndarray:
        """One model's log-probabilities of the documents: its own per-document deviation
        (lognormal, 10%) and token-level noise around ``scale`` times the expected nll."""
        n = tokens.size
        own = rng.lognormal(-0.005, 0.1, n)
        return -(scale * nll * own + np.sqrt(tokens) * rng.standard_normal(n))


CORPORA = {
    "moderate": Corpus(),
    "heavy": Corpus(sigma=1.2, shape=2.0, tilt=-0.2),
}


@cache
def corpus_truth(name: str) -> dict[str, float]:
    """E[nll] / E[tokens] and E[nll] / E[bytes] of the process, from 4 million documents
    (relative Monte Carlo error about 0.1%, far inside any interval below)."""
    rng = np.random.default_rng(12345)
    sums = np.zeros(3)
    for _ in range(8):
        tokens, _, nbytes, nll = CORPORA[name].draw(rng, 500_000)
        sums += (nll.sum(), tokens.sum(), nbytes.sum())
    return {"per_token": sums[0] / sums[1], "per_byte": sums[0] / sums[2]}


def _ratio_truth(name: str, scale_b: float = 1.0) -> dict[str, float]:
    """perplexity and bits_per_byte of run A (scale 1) and their B - A differences."""
    t = corpus_truth(name)
    ppl = math.exp(t["per_token"])
    bpb = t["per_byte"] / math.log(2)
    return {
        "perplexity": ppl,
        "bits_per_byte": bpb,
        "perplexity_diff": math.exp(scale_b * t["per_token"]) - ppl,
        "bits_per_byte_diff": (scale_b - 1) * bpb,
    }


def _bpb(name: str) -> Simulation:
    corpus = CORPORA[name.removeprefix("bpb_")]

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.metrics import perplexity_metrics

        tokens, words, nbytes, nll = corpus.draw(rng, n)
        lp = corpus.run(rng, tokens, nll)
        m = perplexity_metrics(lp.tolist(), tokens.tolist(), words.tolist(), nbytes.tolist())
        truth = _ratio_truth(name.removeprefix("bpb_"))
        return {key: covers(m[key], truth[key]) for key in ("bits_per_byte", "perplexity")}

    return simulate


def _samples(task: str, columns: dict[str, np.ndarray], **fields: Sequence[Any]) -> list[Any]:
    from whetstone.records import SampleRecord

    n = len(next(iter(columns.values())))
    return [
        SampleRecord(
            task=task,
            id=str(i),
            prompt="",
            metrics={k: float(v[i]) for k, v in columns.items()},
            **{k: v[i] for k, v in fields.items()},
        )
        for i in range(n)
    ]


def _compared(a: list[Any], b: list[Any]) -> dict[tuple[str, str], Any]:
    from whetstone.evaluate.compare import compare_samples

    return {(m.task, m.metric): m for m in compare_samples(a, b).metrics}


def _swap(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run A and B from two systems' outputs with the roles swapped at random per item."""
    flip = rng.random(x.shape[0]) < 0.5
    if x.ndim > 1:
        flip = flip[:, None]
    return np.where(flip, y, x), np.where(flip, x, y)


def _ratio(name: str) -> Simulation:
    """ratio_null_iid: both runs i.i.d. given the document. ratio_null_swapped: two systems
    (B 10% worse) with the roles swapped at random per document. ratio_alt: B 5% better."""
    corpus_name = "heavy" if name == "ratio_null_swapped" else "moderate"
    corpus = CORPORA[corpus_name]
    scale_b = 0.95 if name == "ratio_alt" else 1.0

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        tokens, _, nbytes, nll = corpus.draw(rng, n)
        x = corpus.run(rng, tokens, nll)
        y = corpus.run(rng, tokens, nll, 1.1 if name == "ratio_null_swapped" else scale_b)
        if name == "ratio_null_swapped":
            x, y = _swap(rng, x, y)
        units = {"n_tokens": tokens, "n_bytes": nbytes}  # n_words would add a 4th ratio
        found = _compared(
            _samples("ppl", {"logprob": x, **units}), _samples("ppl", {"logprob": y, **units})
        )
        truth = _ratio_truth(corpus_name, scale_b)
        rows: Rows = {}
        for metric in ("perplexity", "bits_per_byte"):
            m = found.get(("ppl", metric))
            if m is None:
                continue
            if name == "ratio_alt":
                rows[f"{metric} interval"] = covers(m, truth[f"{metric}_diff"])
            else:
                rows[f"{metric} test"] = rejects(m.p_value)
                rows[f"{metric} interval"] = covers(m, 0.0)
        return rows

    return simulate


# --------------------------------------------------------------------------- 5. paired means


def _scores(rng: np.random.Generator, item: np.ndarray, shift: float, sd: float) -> np.ndarray:
    """A per-item score in [0, 1] around the item's quality: clipping piles ties at 0 and 1."""
    return np.clip(item + shift + rng.normal(0, sd, item.size), 0, 1)


@cache
def mean_alt_truth() -> float:
    """E[B] - E[A] of mean_alt (the clipping makes it less than the 0.08 shift)."""
    rng = np.random.default_rng(321)
    item = rng.beta(0.6, 0.6, 4_000_000)
    return float(_scores(rng, item, 0.08, 0.25).mean() - _scores(rng, item, 0.0, 0.25).mean())


def _mean(name: str) -> Simulation:
    """mean_null_iid: token_f1 of two runs i.i.d. given the item. mean_null_swapped: rouge_l
    of two systems (one 0.15 worse) swapped at random per item. mean_alt: B 0.08 better."""

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        item = rng.beta(0.6, 0.6, n)
        metric = "rouge_l" if name == "mean_null_swapped" else "token_f1"
        if name == "mean_null_swapped":
            x, y = _swap(rng, _scores(rng, item, 0, 0.2), _scores(rng, item, -0.15, 0.2))
        else:
            x = _scores(rng, item, 0.0, 0.25)
            y = _scores(rng, item, 0.08 if name == "mean_alt" else 0.0, 0.25)
        m = _compared(_samples("gen", {metric: x}), _samples("gen", {metric: y})).get(
            ("gen", metric)
        )
        if m is None:
            return {}
        if name == "mean_alt":
            return {"interval": covers(m, mean_alt_truth())}
        return {"test": rejects(m.p_value), "interval": covers(m, 0.0)}

    return simulate


# --------------------------------------------------------------------------- 6. McNemar

#: P(both right), P(only A), P(only B), P(neither)
CELLS = {
    "mcnemar_null": (0.6, 0.1, 0.1, 0.2),
    "mcnemar_null_rare": (0.8, 0.03, 0.03, 0.14),
    "mcnemar_alt": (0.6, 0.07, 0.13, 0.2),
}


def _mcnemar(name: str) -> Simulation:
    cells = CELLS[name]
    truth = cells[2] - cells[1]

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.statistics import mcnemar_exact

        kind = rng.choice(4, size=n, p=cells)
        a, b = np.isin(kind, (0, 1)), np.isin(kind, (0, 2))
        m = _compared(_samples("mc", {"acc": a * 1.0}), _samples("mc", {"acc": b * 1.0})).get(
            ("mc", "acc")
        )
        rows: Rows = {}
        if m is not None:
            if truth == 0:
                rows["test"] = rejects(m.p_value)
            rows["interval"] = covers(m, truth)
            rows["p vs interval"] = disagrees(m)
        if truth == 0:
            rows["mcnemar_exact"] = rejects(mcnemar_exact(a, b).p_value)
        return rows

    return simulate


# --------------------------------------------------------------------------- 7. contamination


def _contamination(name: str) -> Simulation:
    """n clean items and 5 contaminated ones scored alike (a true null): 0/1 accuracy 0.85,
    or a token_f1-like score in [0, 1] with ties."""

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.audit.config import ContaminationConfig
        from whetstone.audit.contamination import score_split

        total = n + 5
        if name == "contamination_binary":
            scores = (rng.random(total) < 0.85) * 1.0
        else:
            scores = _scores(rng, rng.beta(2, 1, total), 0.0, 0.2)
        coverage = {f"i{k}": (1.0 if k < 5 else 0.0) for k in range(total)}
        values = {f"i{k}": float(v) for k, v in enumerate(scores)}
        split = score_split(
            coverage, values, ContaminationConfig(), run_id="r", task="t", metric="m"
        )
        return {"test": rejects(split.p_value), "interval": covers(split, 0.0)}

    return simulate


# --------------------------------------------------------------------------- 8. Likert


@dataclass(frozen=True)
class Raters:
    """Each item has a quality; its 3 judges rate round(quality + noise) clipped to 1-5."""

    mean: float
    item_sd: float
    judge_sd: float
    skew: float = 0.0  # > 0: quality = mean - Gamma(2, skew), most items good, a tail of bad

    def ratings(self, rng: np.random.Generator, n: int, judges: int = 3) -> np.ndarray:
        if self.skew:
            quality = self.mean - rng.gamma(2.0, self.skew, n)
        else:
            quality = rng.normal(self.mean, self.item_sd, n)
        noise = rng.normal(0, self.judge_sd, (n, judges))
        return np.clip(np.rint(quality[:, None] + noise), 1, 5).astype(int)


RATERS = {
    "likert_items": Raters(mean=3.2, item_sd=0.9, judge_sd=0.7),
    "likert_skewed": Raters(mean=4.8, item_sd=0.0, judge_sd=0.5, skew=0.45),
}


@cache
def likert_truth(name: str) -> dict[str, float]:
    r = RATERS[name].ratings(np.random.default_rng(77), 2_000_000, judges=1).ravel()
    out = {f"share of {k}": float(np.mean(r == k)) for k in range(1, 6)}
    out["mean"] = float(r.mean())
    return out


def _judgments(ratings: np.ndarray, model: str = "m") -> list[Any]:
    from whetstone.records import FeedbackJudgment

    return [
        FeedbackJudgment(
            campaign="c",
            mode="review",
            item_id=f"i{i}",
            participant=f"p{(i + j) % 7}",
            model=model,
            prompt="",
            output="",
            likert=int(ratings[i, j]),
        )
        for i in range(ratings.shape[0])
        for j in range(ratings.shape[1])
    ]


def _likert(name: str) -> Simulation:
    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.feedback.summary import _model_ratings

        out = _model_ratings("m", _judgments(RATERS[name].ratings(rng, n)), 1000)
        truth = likert_truth(name)
        rows = {
            f"share of {lv.level}": covers(lv.share, truth[f"share of {lv.level}"])
            for lv in out.likert
        }
        rows["mean"] = covers(out.likert_mean, truth["mean"])
        return rows

    return simulate


# --------------------------------------------------------------------------- Bradley-Terry

BT_STRENGTHS = {"bradley_terry": (0.6, 0.0, -0.6), "bradley_terry_uneven": (1.0, 0.3, 0.0, -0.5)}


def _battles(rng: np.random.Generator, n: int, theta: Sequence[float], uneven: bool) -> list[Any]:
    from whetstone.feedback.ranking import Battle

    p = len(theta)
    pairs = [(i, j) for i in range(p) for j in range(i + 1, p)]
    weights = np.array([1.0 + 3.0 * (uneven and 0 in pair) for pair in pairs])
    picks = rng.choice(len(pairs), size=n, p=weights / weights.sum())
    out = []
    for k in picks:
        i, j = pairs[k]
        if rng.random() < 0.5:
            i, j = j, i
        win = rng.random() < 1 / (1 + math.exp(-(theta[i] - theta[j])))
        out.append(
            Battle(
                model_a=f"m{i}",
                model_b=f"m{j}",
                winner="a" if win else "b",
                participant="p",
                item_id=f"x{len(out)}",
            )
        )
    return out


def _bradley_terry(name: str) -> Simulation:
    theta = np.asarray(BT_STRENGTHS[name])

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.feedback.ranking import rank_models, to_rating

        ranking = rank_models(_battles(rng, n, theta, name.endswith("uneven")))
        truth = to_rating(theta - theta.mean())
        rows: Rows = {}
        if ranking is None:
            return rows
        for entry in ranking.entries:
            k = int(entry.model[1:])
            rows[f"rating m{k}"] = covers(entry, float(truth[k]))
        return rows

    return simulate


# --------------------------------------------------------------------------- 9. too few


def _too_few(rng: np.random.Generator, n: int) -> Rows:
    """Outputs of n = 1-3 items (battles): each should be flagged or an honest (wide) interval,
    never a point interval."""
    from whetstone.audit.config import ContaminationConfig
    from whetstone.audit.contamination import score_split
    from whetstone.evaluate.metrics import (
        classification_metrics,
        generation_metrics,
        mean_metric,
        multiple_choice_metrics,
        perplexity_metrics,
    )
    from whetstone.feedback.ranking import rank_models
    from whetstone.feedback.summary import _model_ratings

    rows: Rows = {}
    rows["mean_metric"] = flag_check(mean_metric(rng.random(n)))
    pred, ref = _bleu_population("bleu_noisy")
    pick = rng.integers(0, len(pred), n)
    gen, _ = generation_metrics([pred[i] for i in pick], [[ref[i]] for i in pick])
    for key in ("bleu", "chrf", "token_f1", "rouge_l"):
        rows[f"generation {key}"] = flag_check(gen.get(key))
    tokens, words, nbytes, nll = CORPORA["moderate"].draw(rng, n)
    lp = CORPORA["moderate"].run(rng, tokens, nll)
    ppl = perplexity_metrics(lp.tolist(), tokens.tolist(), words.tolist(), nbytes.tolist())
    rows["bits_per_byte"] = flag_check(ppl["bits_per_byte"])
    cal = CALIBRATIONS["ece_calibrated"]
    c = cal.confidence(rng, n)
    lls = np.column_stack([np.log(c)] + [np.log((1 - c) / 3)] * 3).tolist()
    gold = [int(g) for g in np.where(rng.random(n) < c, 0, 1)]
    mc, _ = multiple_choice_metrics(lls, [[1] * 4] * n, gold)
    rows["ece"] = flag_check(mc.get("ece"))
    rows["brier"] = flag_check(mc.get("brier"))
    g, p = CONFUSIONS["macro_balanced"].draw(rng, n)
    labels = ["0", "1", "2", "3"]
    cls, _, _ = classification_metrics([labels[x] for x in g], [labels[x] for x in p], labels)
    rows["f1_macro"] = flag_check(_metric(cls, "f1_macro", "f1"))
    ratings = _model_ratings("m", _judgments(RATERS["likert_items"].ratings(rng, n)), 1000)
    rows["likert mean"] = flag_check(ratings.likert_mean)
    rows["likert share"] = flag_check(max(ratings.likert, key=lambda lv: lv.count).share)
    ranking = rank_models(_battles(rng, n, BT_STRENGTHS["bradley_terry"][:2], False))
    rows["bradley_terry"] = flag_check(ranking.entries[0] if ranking else None)
    coverage = {f"i{k}": (1.0 if k == 0 else 0.0) for k in range(n + 1)}
    values = {f"i{k}": float(v) for k, v in enumerate(rng.random(n + 1))}
    split = score_split(coverage, values, ContaminationConfig(), run_id="r", task="t", metric="m")
    rows["contamination diff"] = flag_check(split)
    return rows


# --------------------------------------------------------------------------- 10. BLEU / chrF

_VOCAB_SIZE = 400


def _zipf_words(rng: np.random.Generator, size: int) -> list[str]:
    ranks = np.arange(1, _VOCAB_SIZE + 1)
    p = 1 / ranks**1.1
    return [f"w{k}" for k in rng.choice(_VOCAB_SIZE, size=size, p=p / p.sum())]


BLEU_PROCESSES = {
    "bleu_noisy": "each word kept with the sentence's quality (Beta(3, 2)), else replaced; "
    "5% deletions, Poisson(0.7) insertions",
    "bleu_short": "quality Beta(1.5, 1.5) (a fifth near-copies), half the predictions cut to "
    "40-100% of their length (brevity penalty)",
}


@cache
def _bleu_population(name: str, size: int = 3000) -> tuple[list[str], list[str]]:
    """A finite population of (prediction, reference) pairs, as BLEU_PROCESSES says."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    preds, refs = [], []
    for _ in range(size):
        ref = _zipf_words(rng, int(rng.integers(6, 30)))
        if name == "bleu_noisy":
            quality = rng.beta(3, 2)
            hyp = [w if rng.random() < quality else _zipf_words(rng, 1)[0] for w in ref]
            hyp = [w for w in hyp if rng.random() > 0.05]
            hyp += _zipf_words(rng, int(rng.poisson(0.7)))
        else:
            quality = 0.98 if rng.random() < 0.2 else rng.beta(1.5, 1.5)
            hyp = [w if rng.random() < quality else _zipf_words(rng, 1)[0] for w in ref]
            if rng.random() < 0.5:
                hyp = hyp[: max(1, int(len(hyp) * rng.uniform(0.4, 1.0)))]
        preds.append(" ".join(hyp) or ref[0])
        refs.append(" ".join(ref))
    return preds, refs


@cache
def bleu_truth(name: str) -> dict[str, float]:
    """Corpus BLEU and chrF of the whole population (sacrebleu, as whetstone reports them)."""
    import sacrebleu

    preds, refs = _bleu_population(name)
    return {
        "bleu": float(sacrebleu.corpus_bleu(preds, [refs]).score),
        "chrf": float(sacrebleu.corpus_chrf(preds, [refs]).score),
    }


def _draw_pairs(rng: np.random.Generator, name: str, n: int) -> tuple[list[str], list[list[str]]]:
    preds, refs = _bleu_population(name)
    pick = rng.integers(0, len(preds), n)  # with replacement: the truth is the population's
    return [preds[i] for i in pick], [[refs[i]] for i in pick]


def _bleu(name: str) -> Simulation:
    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.metrics import generation_metrics

        aggregates, _ = generation_metrics(*_draw_pairs(rng, name, n))
        truth = bleu_truth(name)
        return {key: covers(aggregates[key], truth[key]) for key in ("bleu", "chrf")}

    return simulate


SEEDS = 5


def _bleu_seeds(rng: np.random.Generator, n: int) -> Rows:
    """One sample of n pairs scored with bootstrap seeds 0-4: how far the interval ends move
    (the larger of the two ends' ranges, in BLEU / chrF points)."""
    from whetstone.evaluate.metrics import generation_metrics

    pairs = _draw_pairs(rng, "bleu_noisy", n)
    ends: dict[str, list[tuple[float, float]]] = {"bleu": [], "chrf": []}
    for seed in range(SEEDS):
        aggregates, _ = generation_metrics(*pairs, seed=seed)
        for key, got in ends.items():
            e = _ends(aggregates[key])
            if e is not None:
                got.append(e)
    rows: Rows = {}
    for key, got in ends.items():
        if len(got) < SEEDS:
            rows[key] = Outcome(None, flagged=True)
            continue
        arr = np.asarray(got)
        rows[key] = Outcome(float(np.ptp(arr, axis=0).max()))
    return rows


# --------------------------------------------------------------------------- 11. the gate


def _gate(name: str) -> Simulation:
    """gate_null: 3 candidates and the baseline, i.i.d. given the item, on acc, token_f1 and
    rouge_l of one task. gate_null_mixed: acc (items of varied difficulty), token_f1 and
    bits_per_byte of three tasks. The gate checks every candidate with margin 0: the rate of
    a fail verdict anywhere (bound alpha/2 = 2.5%)."""

    def simulate(rng: np.random.Generator, n: int) -> Rows:
        from whetstone.evaluate.gate import sample_comparer
        from whetstone.pipeline.schema import GateSpec
        from whetstone.pipeline.selection import apply_gate

        item = rng.beta(0.6, 0.6, n)
        easy = rng.beta(0.7, 0.4, n)
        corpus = CORPORA["moderate"]
        tokens, _, nbytes, nll = corpus.draw(rng, n)
        units = {"n_tokens": tokens, "n_bytes": nbytes}

        def run() -> list[Any]:
            acc = (rng.random(n) < easy) * 1.0
            if name == "gate_null":
                return _samples(
                    "t",
                    {
                        "acc": acc,
                        "token_f1": _scores(rng, item, 0, 0.2),
                        "rouge_l": _scores(rng, item, 0, 0.2),
                    },
                )
            return (
                _samples("mc", {"acc": acc})
                + _samples("gen", {"token_f1": _scores(rng, item, 0, 0.2)})
                + _samples("ppl", {"logprob": corpus.run(rng, tokens, nll), **units})
            )

        base = run()
        compare = sample_comparer(base, {f"c{k}": (f"c{k}", run()) for k in range(3)})
        metrics = (
            ["t/acc", "t/token_f1", "t/rouge_l"]
            if name == "gate_null"
            else ["mc/acc", "gen/token_f1", "ppl/bits_per_byte"]
        )
        spec = GateSpec(metrics=metrics, candidates="all")
        verdict = apply_gate(spec, compare, ["c0", "c1", "c2"]).verdict
        return {"false failure": Outcome(float(verdict == "fail"))}

    return simulate


@cache
def margin_f1_truth() -> float:
    """E[B] - E[A] of gate_at_margin's token_f1 (clipping makes it less than the shift)."""
    rng = np.random.default_rng(654)
    item = rng.beta(0.6, 0.6, 4_000_000)
    return float(_scores(rng, item, -0.12, 0.2).mean() - _scores(rng, item, 0.0, 0.2).mean())


#: gate_at_margin's acc: the baseline is right with chance easy_i (mean 7/11); the candidate
#: loses a right answer with chance _BREAK and gains a wrong one with chance _MEND, so it is
#: worse by exactly _ACC_MARGIN on average.
_ACC_MARGIN, _MEND = 0.1, 0.05
_BREAK = (_ACC_MARGIN + (1 - 7 / 11) * _MEND) / (7 / 11)


def _gate_at_margin(rng: np.random.Generator, n: int) -> Rows:
    """One candidate worse than the baseline by exactly the margin, on acc and on token_f1
    (each its own gate): the rate of a pass verdict (bound alpha/2 = 2.5%)."""
    from whetstone.evaluate.gate import Margin, sample_comparer
    from whetstone.pipeline.schema import GateSpec
    from whetstone.pipeline.selection import apply_gate

    easy, item = rng.beta(0.7, 0.4, n), rng.beta(0.6, 0.6, n)
    a_acc = (rng.random(n) < easy) * 1.0
    b_acc = np.where(a_acc == 1, rng.random(n) >= _BREAK, rng.random(n) < _MEND) * 1.0
    base = _samples("t", {"acc": a_acc, "token_f1": _scores(rng, item, 0.0, 0.2)})
    cand = _samples("t", {"acc": b_acc, "token_f1": _scores(rng, item, -0.12, 0.2)})
    compare = sample_comparer(base, {"c": ("c", cand)})
    rows: Rows = {}
    for metric, margin in (("acc", _ACC_MARGIN), ("token_f1", -margin_f1_truth())):
        spec = GateSpec(metrics=[f"t/{metric}"], candidates="all", margin=Margin(value=margin))
        verdict = apply_gate(spec, compare, ["c"]).verdict
        rows[f"false pass {metric}"] = Outcome(float(verdict == "pass"))
    return rows


# --------------------------------------------------------------------------- 12. sanity rows


def _wilson(rng: np.random.Generator, n: int) -> Rows:
    """wilson_ci at p = 0.1 and p = 0.02; mean_metric(binary=True) at p = 0.1."""
    from whetstone.evaluate.metrics import mean_metric
    from whetstone.evaluate.statistics import wilson_ci

    rows: Rows = {}
    for p in (0.1, 0.02):
        low, high = wilson_ci(int((rng.random(n) < p).sum()), n)
        rows[f"wilson_ci p={p}"] = Outcome(float(low <= p <= high), point=_is_point(low, high))
    rows["mean_metric binary p=0.1"] = covers(
        mean_metric((rng.random(n) < 0.1) * 1.0, binary=True), 0.1
    )
    return rows


def _skewed_means(rng: np.random.Generator, n: int) -> Rows:
    """Lognormal(0, 1) values (truth e^0.5) through mean_metric and bootstrap_ci; paired
    lognormal values whose difference is skewed with mean 0 through paired_bootstrap, and
    whose difference is symmetric about 0 (a sign-flip null) through paired_permutation_test."""
    from whetstone.evaluate.metrics import mean_metric
    from whetstone.evaluate.statistics import (
        bootstrap_ci,
        paired_bootstrap,
        paired_permutation_test,
    )

    x = rng.lognormal(0, 1, n)
    rows: Rows = {"mean_metric": covers(mean_metric(x), math.exp(0.5))}
    if n >= 2:
        low, high = bootstrap_ci(x)
        rows["bootstrap_ci"] = Outcome(float(low <= math.exp(0.5) <= high))
    a = rng.lognormal(0, 1, n)
    skewed = a + 0.5 * (rng.exponential(1.0, n) - 1.0)  # mean difference 0, skewed
    rows["paired_bootstrap"] = covers(paired_bootstrap(a, skewed), 0.0)
    symmetric = a + rng.laplace(0, 0.5, n)
    rows["paired_permutation_test"] = rejects(paired_permutation_test(a, symmetric).p_value)
    return rows


def _bh(rng: np.random.Generator, n: int) -> Rows:
    """10 slices of n items, each a paired 0/1 comparison under a true null (mcnemar_exact);
    benjamini_hochberg over them: the chance that any adjusted p < 0.05 (FWER = FDR here)."""
    from whetstone.evaluate.statistics import benjamini_hochberg, mcnemar_exact

    cells = CELLS["mcnemar_null"]
    pvalues = []
    for _ in range(10):
        kind = rng.choice(4, size=n, p=cells)
        pvalues.append(mcnemar_exact(np.isin(kind, (0, 1)), np.isin(kind, (0, 2))).p_value)
    return {"any rejection": Outcome(float(np.min(benjamini_hochberg(pvalues)) < ALPHA))}


# --------------------------------------------------------------------------- the registry


def _rows(kind: str, holds_from: int, *names: str, target: float | None = None) -> list[Row]:
    return [Row(name, kind, holds_from, target) for name in names]


def _paired(holds_from: int = 5, *, prefix: str = "") -> tuple[Row, ...]:
    return (Row(f"{prefix}test", "size", holds_from), Row(f"{prefix}interval", "coverage", 10))


_PPL_CALLS = (
    "whetstone.evaluate.compare.compare_samples (perplexity task: logprob, n_tokens, n_bytes; "
    "perplexity and bits_per_byte rows)"
)
_MEAN_CALLS = "whetstone.evaluate.compare.compare_samples (a continuous per-item metric)"

ROUTINES: dict[str, Spec] = {
    **{
        name: Spec(
            _ece(name),
            tuple(_rows("coverage", 10, "ece", "ece_debiased")),
            process=(
                f"{c.k}-way multiple choice, top confidence "
                + (
                    "uniform on [1/K, 1)"
                    if c.dist == "uniform"
                    else f"1/K + (1-1/K) Beta({c.a:g}, {c.b:g})"
                )
                + (
                    ", accuracy = confidence"
                    if c.bend == 1 and c.slope == 1
                    else ", accuracy 1/K + (1-1/K) f(u), "
                    f"f(u) = 0.5 + {c.slope:g} (u^{c.bend:g} - 0.5)"
                )
            ),
            truth=f"population ECE, 10 equal-width bins = {true_ece(name):.4f}"
            if "mis" in name
            else "0",
            calls="whetstone.evaluate.metrics.multiple_choice_metrics -> ece, ece_debiased",
        )
        for name, c in CALIBRATIONS.items()
    },
    **{
        name: Spec(
            _macro(name),
            tuple(_rows("coverage", 100, *MACRO)),
            process=f"prior {conf.prior}, confusion rows {conf.confusion}",
            truth=", ".join(f"{k} {v:.4f}" for k, v in conf.truth().items()),
            calls="whetstone.evaluate.metrics.classification_metrics -> f1_macro, recall_macro, "
            "precision_macro (or f1, recall, precision)",
        )
        for name, conf in CONFUSIONS.items()
    },
    **{
        f"bpb_{name}": Spec(
            _bpb(f"bpb_{name}"),
            (Row("bits_per_byte", "coverage", 30), Row("perplexity", "coverage", 30)),
            process=f"documents: {c}",
            truth="bits_per_byte = E[nll] / E[bytes] / ln 2, perplexity = exp(E[nll] / E[tokens])"
            " (4M documents of the process)",
            calls="whetstone.evaluate.metrics.perplexity_metrics -> bits_per_byte, perplexity",
        )
        for name, c in CORPORA.items()
    },
    "ratio_null_iid": Spec(
        _ratio("ratio_null_iid"),
        (
            *_rows("size", 5, "perplexity test", "bits_per_byte test"),
            *_rows("coverage", 10, "perplexity interval", "bits_per_byte interval"),
        ),
        process="moderate documents; two runs i.i.d. given the document",
        truth="no difference (size of the test; interval contains 0)",
        calls=_PPL_CALLS,
        cost=0.5,
    ),
    "ratio_null_swapped": Spec(
        _ratio("ratio_null_swapped"),
        (
            *_rows("size", 5, "perplexity test", "bits_per_byte test"),
            *_rows("coverage", 10, "perplexity interval", "bits_per_byte interval"),
        ),
        process="heavy-tailed documents; two systems (one 10% worse), A/B roles swapped at "
        "random per document",
        truth="no difference",
        calls=_PPL_CALLS,
        cost=0.5,
    ),
    "ratio_alt": Spec(
        _ratio("ratio_alt"),
        tuple(_rows("coverage", 10, "perplexity interval", "bits_per_byte interval")),
        process="moderate documents; B's nll 5% lower",
        truth="B - A of the population ratios",
        calls=_PPL_CALLS,
        cost=0.3,
    ),
    "mean_null_iid": Spec(
        _mean("mean_null_iid"),
        _paired(),
        process="token_f1 = clip(q + N(0, 0.25)), q ~ Beta(0.6, 0.6) per item, two runs i.i.d.",
        truth="no difference",
        calls=_MEAN_CALLS,
        cost=0.6,
    ),
    "mean_null_swapped": Spec(
        _mean("mean_null_swapped"),
        _paired(),
        process="rouge_l of two systems (clip(q + N(0, .2)), clip(q - .15 + N(0, .2))), roles "
        "swapped at random per item",
        truth="no difference",
        calls=_MEAN_CALLS,
        cost=0.6,
    ),
    "mean_alt": Spec(
        _mean("mean_alt"),
        (Row("interval", "coverage", 10),),
        process="token_f1 as mean_null_iid, B shifted by +0.08 before clipping",
        truth=f"E[B] - E[A] = {mean_alt_truth():.4f}",
        calls=_MEAN_CALLS,
        cost=0.6,
    ),
    **{
        name: Spec(
            _mcnemar(name),
            (
                *((Row("test", "size", 5),) if "null" in name else ()),
                Row("interval", "coverage", 10),
                Row("p vs interval", "disagree", 5),
                *((Row("mcnemar_exact", "size", 5),) if "null" in name else ()),
            ),
            process=f"paired 0/1: P(both, only A, only B, neither) = {cells}",
            truth=f"p(B) - p(A) = {cells[2] - cells[1]:g}",
            calls="compare_samples (acc: exact McNemar and the interval beside it); "
            "whetstone.evaluate.statistics.mcnemar_exact",
        )
        for name, cells in CELLS.items()
    },
    **{
        name: Spec(
            _contamination(name),
            # five contaminated non-0/1 scores are too few for an interval: only the test holds
            _paired(5) if name.endswith("binary") else (Row("test", "size", 5),),
            process="n clean + 5 contaminated items, same "
            + ("accuracy 0.85" if name.endswith("binary") else "score clip(Beta(2,1) + N(0,.2))"),
            truth="no difference",
            calls="whetstone.audit.contamination.score_split (p_value, ci_low/ci_high)",
            cost=0.6,
        )
        for name in ("contamination_binary", "contamination_score")
    },
    **{
        name: Spec(
            _likert(name),
            tuple(_rows("coverage", 10, *(f"share of {k}" for k in range(1, 6)), "mean")),
            process=f"3 judges per item: {r}",
            truth=", ".join(f"{k} {v:.3f}" for k, v in likert_truth(name).items()),
            calls="whetstone.feedback.summary._model_ratings (likert[].share, likert_mean)",
            cost=0.6,
        )
        for name, r in RATERS.items()
    },
    **{
        name: Spec(
            _bradley_terry(name),
            tuple(_rows("coverage", 30, *(f"rating m{k}" for k in range(len(theta))))),
            process=f"n battles, log-odds strengths {theta}"
            + (", model 0 in 4x more battles" if name.endswith("uneven") else ", even pairs"),
            truth="to_rating(theta - mean theta)",
            calls="whetstone.feedback.ranking.rank_models (entries[].ci_low/ci_high)",
            cost=0.05,
        )
        for name, theta in BT_STRENGTHS.items()
    },
    "too_few": Spec(
        _too_few,
        tuple(
            _rows(
                "flag",
                1,
                "mean_metric",
                "generation bleu",
                "generation chrf",
                "generation token_f1",
                "generation rouge_l",
                "bits_per_byte",
                "ece",
                "brier",
                "f1_macro",
                "likert mean",
                "likert share",
                "bradley_terry",
                "contamination diff",
            )
        ),
        process="n = 1, 2, 3 items (battles; contamination: 1 contaminated + n clean)",
        truth="flagged too_few or an honest interval; never a point interval",
        calls="mean_metric, generation_metrics, perplexity_metrics, multiple_choice_metrics, "
        "classification_metrics, _model_ratings, rank_models, score_split",
        cost=0.2,
        sizes=FLAG_SIZES,
    ),
    **{
        name: Spec(
            _bleu(name),
            tuple(_rows("coverage", 30, "bleu", "chrf")),
            process="n pairs drawn with replacement from 3000 generated pairs (Zipf vocabulary "
            "of 400 words, references of 6-29 words): " + BLEU_PROCESSES[name],
            truth=", ".join(f"{k} {v:.2f}" for k, v in bleu_truth(name).items())
            + " (corpus score of the population)",
            calls="whetstone.evaluate.metrics.generation_metrics -> bleu, chrf",
            cost=0.3,
        )
        for name in ("bleu_noisy", "bleu_short")
    },
    "bleu_seeds": Spec(
        _bleu_seeds,
        tuple(_rows("spread", 10, "bleu", "chrf")),
        process="one bleu_noisy sample scored with seeds 0-4",
        truth="mean over data sets of the larger range of the two interval ends (points)",
        calls="generation_metrics(..., seed=0..4)",
        cost=0.06,
        sizes=(5, 10, 30, 100),
    ),
    **{
        name: Spec(
            _gate(name),
            (Row("false failure", "size", 5),),
            process="3 candidates x 3 metrics, all like the baseline: "
            + (
                "t/acc, t/token_f1, t/rouge_l"
                if name == "gate_null"
                else "mc/acc, gen/token_f1, ppl/bits_per_byte"
            ),
            truth="no candidate worse",
            calls="whetstone.evaluate.gate.sample_comparer, "
            "whetstone.pipeline.selection.apply_gate(GateSpec(candidates='all'))",
            cost=0.3 if name == "gate_null" else 0.2,
        )
        for name in ("gate_null", "gate_null_mixed")
    },
    "gate_at_margin": Spec(
        _gate_at_margin,
        (Row("false pass acc", "size", 5, 0.0275), Row("false pass token_f1", "size", 5, 0.0275)),
        process="1 candidate worse than the baseline by exactly the margin: t/acc (margin 0.1, "
        "right answers lost and wrong ones mended at random) and t/token_f1 (item scores "
        "shifted down, margin the clipped mean shift), each gated alone",
        truth="the candidate is worse by the margin: a pass is wrong",
        calls="whetstone.evaluate.gate.sample_comparer, "
        "whetstone.pipeline.selection.apply_gate(GateSpec(candidates='all', margin=...))",
        cost=0.3,
    ),
    "benjamini_hochberg": Spec(
        _bh,
        (Row("any rejection", "size", 5),),
        process="10 null slices of paired 0/1 items (mcnemar_null cells)",
        truth="no slice differs",
        calls="whetstone.evaluate.statistics.mcnemar_exact, benjamini_hochberg",
    ),
    "wilson": Spec(
        _wilson,
        tuple(
            _rows("coverage", 30, "wilson_ci p=0.1", "wilson_ci p=0.02", "mean_metric binary p=0.1")
        ),
        process="Bernoulli(p) items (Wilson's exact coverage is 0.919 (p = 0.1) and 0.904 "
        "(p = 0.02) at n = 5, 0.930 (p = 0.1) at n = 10: the method's own, so the target starts "
        "at 30)",
        truth="p",
        calls="whetstone.evaluate.statistics.wilson_ci, metrics.mean_metric(binary=True)",
    ),
    "skewed_means": Spec(
        _skewed_means,
        (
            Row("mean_metric", "coverage", 30),
            Row("bootstrap_ci", "coverage", 30),
            Row("paired_bootstrap", "coverage", 30),
            Row("paired_permutation_test", "size", 5),
        ),
        process="lognormal(0, 1) items; paired: b = a + (Exp(1) - 1) / 2 for the interval, "
        "b = a + Laplace(0, 0.5) for the test",
        truth="mean e^0.5; paired difference 0",
        calls="metrics.mean_metric, statistics.bootstrap_ci, paired_bootstrap, "
        "paired_permutation_test",
    ),
}


# --------------------------------------------------------------------------- running


@dataclass
class Cell:
    """Per row of one (routine, n): outcomes gathered over the data sets."""

    reps: int = 0
    errors: int = 0
    first_error: str = ""
    hits: dict[str, list[float]] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    point: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def add(self, rows: Rows) -> None:
        for name, o in rows.items():
            self.seen[name] = self.seen.get(name, 0) + 1
            self.flagged[name] = self.flagged.get(name, 0) + o.flagged
            self.point[name] = self.point.get(name, 0) + o.point
            if o.hit is not None:
                self.hits.setdefault(name, []).append(float(o.hit))

    def summary(self, row: str) -> dict[str, float]:
        hits = np.asarray(self.hits.get(row, []), dtype=float)
        reps = max(self.reps, 1)
        share = float(hits.mean()) if hits.size else math.nan
        se = float(hits.std() / math.sqrt(hits.size)) if hits.size > 1 else math.nan
        return {
            "share": share,
            "se": se,
            "runs": int(hits.size),
            "reps": self.reps,
            "flagged": self.flagged.get(row, 0) / reps,
            "point": self.point.get(row, 0) / reps,
            "missing": 1 - self.seen.get(row, 0) / reps,
            "errors": self.errors / reps,
        }


def simulate(name: str, n: int, reps: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Run one routine on ``reps`` data sets of size n: per row, the share of hits (coverage,
    size, disagreement or mean spread) over the runs that gave one, its Monte Carlo SE, and
    the shares flagged too_few, point intervals, missing rows and errors."""
    spec = ROUTINES[name]
    rng = _seeded(seed, name, n)
    cell = Cell()
    for _ in range(reps):
        cell.reps += 1
        try:
            cell.add(spec.fn(rng, n))
        except Exception as e:  # an older whetstone, or a routine that refuses the data set
            cell.errors += 1
            if not cell.first_error:
                cell.first_error = f"{type(e).__name__}: {e}"[:300]
                print(f"  {name} n={n}: {cell.first_error}", file=sys.stderr, flush=True)
            if cell.errors >= 10 and not cell.seen:
                break  # the API is not there at all
    out = {row.name: cell.summary(row.name) for row in spec.rows}
    for row in out.values():
        row["error"] = cell.first_error  # type: ignore[assignment]
    return out


def cell_reps(name: str, n: int, reps: int, reps_large: int) -> int:
    base = reps_large if n >= LARGE else reps
    return max(10, round(base * ROUTINES[name].cost))


def sizes_of(name: str, sizes: Iterable[int]) -> list[int]:
    spec = ROUTINES[name]
    return list(spec.sizes) if spec.sizes else list(sizes)


def _job(args: tuple[str, int, int, int]) -> tuple[str, int, dict[str, dict[str, float]], float]:
    name, n, reps, seed = args
    start = time.perf_counter()
    result = simulate(name, n, reps, seed)
    return name, n, result, time.perf_counter() - start


def prepare(names: Iterable[str]) -> None:
    """Compute the truths once in the parent, so that forked workers inherit them."""
    for name in names:
        if name in CORPORA or name.startswith("bpb_"):
            corpus_truth(name.removeprefix("bpb_"))
    corpus_truth("moderate")
    corpus_truth("heavy")
    for name in ("bleu_noisy", "bleu_short"):
        bleu_truth(name)


Results = dict[tuple[str, int], dict[str, dict[str, float]]]


def run_cells(cells: list[tuple[str, int, int]], workers: int = 2, seed: int = 0) -> Results:
    """Simulate (routine, n, reps) cells in worker processes, the costliest first."""
    prepare(name for name, _, _ in cells)
    jobs = [(name, n, reps, seed) for name, n, reps in cells]
    jobs.sort(key=lambda j: -j[2] * max(j[1], 20) ** 0.7 * ROUTINES[j[0]].cost)
    out: Results = {}
    start = time.perf_counter()
    if workers <= 1:
        done = (_job(j) for j in jobs)
        for k, (name, n, res, wall) in enumerate(done, 1):
            out[(name, n)] = res
            _progress(k, len(jobs), name, n, res, wall, start)
        return out
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_job, j) for j in jobs]
        for k, future in enumerate(as_completed(futures), 1):
            name, n, res, wall = future.result()
            out[(name, n)] = res
            _progress(k, len(jobs), name, n, res, wall, start)
    return out


def _progress(
    k: int, total: int, name: str, n: int, res: dict[str, dict[str, float]], wall: float, t0: float
) -> None:
    shares = ", ".join(
        f"{row}={r['share']:.3f}" for row, r in res.items() if not math.isnan(r["share"])
    )
    print(
        f"[{k}/{total} {time.perf_counter() - t0:6.0f} s] {name} n={n} ({wall:.0f} s): {shares}",
        file=sys.stderr,
        flush=True,
    )


def run_all(
    names: list[str],
    sizes: list[int],
    reps: int,
    workers: int,
    seed: int = 0,
    reps_large: int | None = None,
) -> Results:
    """Every routine at every size (the too-few checks at FLAG_SIZES)."""
    large = reps_large if reps_large is not None else max(20, reps // 5)
    cells = [
        (name, n, cell_reps(name, n, reps, large)) for name in names for n in sizes_of(name, sizes)
    ]
    return run_cells(cells, workers, seed)


# --------------------------------------------------------------------------- the record


def _fmt_share(r: dict[str, float], kind: str) -> str:
    if kind == "flag":
        cell = f"{r['flagged']:.0%} too few"
        if r["point"]:
            cell += f", **{r['point']:.0%} point**"
        return cell
    if math.isnan(r["share"]):
        if r["missing"] >= 1 - 1e-9:
            return "not reported" if not r["errors"] else "error"
        return "too few" if r["flagged"] else "–"
    digits = 2 if kind == "spread" else 3
    cell = f"{r['share']:.{digits}f}"
    if not math.isnan(r["se"]):
        cell += f" ± {r['se']:.{digits}f}"
    notes = []
    if r["flagged"]:
        notes.append(f"{r['flagged']:.0%} too few")
    if r["point"]:
        notes.append(f"{r['point']:.0%} point")
    if r["errors"]:
        notes.append(f"{r['errors']:.0%} errors")
    return cell + (f" ({', '.join(notes)})" if notes else "")


def fails(row: Row, n: int, r: dict[str, float]) -> bool:
    """Whether a cell misses its target at a size where the target must hold."""
    goal = row.goal
    if goal is None or n < row.holds_from:
        return False
    if row.kind == "flag":
        return r["point"] > 0
    if math.isnan(r["share"]):
        return False
    return r["share"] < goal if row.kind == "coverage" else r["share"] > goal


def _target_text(row: Row) -> str:
    goal = row.goal
    if goal is None:
        return "report"
    if row.kind == "flag":
        return "no point interval"
    sign = ">=" if row.kind == "coverage" else "<="
    return f"{sign} {goal:g} from n={row.holds_from}"


def routine_table(name: str, results: Results, sizes: list[int]) -> str:
    spec = ROUTINES[name]
    ns = [n for n in sizes_of(name, sizes) if (name, n) in results]
    lines = [
        f"### {name}",
        "",
        f"Process: {spec.process}. Truth: {spec.truth}. Calls: `{spec.calls}`.",
        "",
        "| row | measures | target | " + " | ".join(f"n={n}" for n in ns) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    for row in spec.rows:
        cells = []
        for n in ns:
            r = results[(name, n)][row.name]
            text = _fmt_share(r, row.kind)
            cells.append(f"**{text}** ✗" if fails(row, n, r) and row.kind != "flag" else text)
        lines.append(
            f"| {row.name} | {row.kind} | {_target_text(row)} | " + " | ".join(cells) + " |"
        )
    reps = sorted({int(results[(name, n)][spec.rows[0].name]["reps"]) for n in ns})
    errors = {results[(name, n)][spec.rows[0].name].get("error") for n in ns} - {"", None}
    lines += ["", f"Data sets per cell: {', '.join(map(str, reps))}."]
    if errors:
        lines.append(f"Errors: {'; '.join(sorted(map(str, errors)))}")
    return "\n".join(lines)


def summary_table(results: Results, sizes: list[int]) -> str:
    """Each row's cells that miss their target where it must hold."""
    names = list(dict.fromkeys(k[0] for k in results))
    lines = ["| routine | row | target | misses |", "| --- | --- | --- | --- |"]
    for name in names:
        for row in ROUTINES[name].rows:
            missed = [
                f"n={n}: {_fmt_share(results[(name, n)][row.name], row.kind)}"
                for n in sizes_of(name, sizes)
                if (name, n) in results and fails(row, n, results[(name, n)][row.name])
            ]
            if missed:
                lines.append(f"| {name} | {row.name} | {_target_text(row)} | {'; '.join(missed)} |")
    if len(lines) == 2:
        lines.append("| (none) | | | |")
    return "\n".join(lines)


def commit() -> str:
    """HEAD of the checkout, with + when src/ has uncommitted changes (read-only git)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+" if dirty else "")


def header(reps: int, reps_large: int, sizes: list[int], label: str = "") -> str:
    import whetstone
    from whetstone.optimize.distill_measure import machine

    info = machine()
    source = Path(whetstone.__file__).resolve().parents[1]
    where = "this checkout's src/" if source == REPO / "src" else f"`{source}`"
    lines = [
        "# Coverage and size by simulation",
        "",
        f"- Machine: {info['cpu']}, {info['cores']} cores, Python {platform.python_version()}",
        f"- Commit: {commit()} (whetstone imported from {where})",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Reps: {reps} data sets per cell for n < {LARGE}, {reps_large} at n >= {LARGE}, "
        "times the routine's share (Bradley-Terry, BLEU, the gate and the too-few checks get "
        "fewer); sizes " + ", ".join(map(str, sizes)),
    ]
    if label:
        lines.append(f"- Code measured: {label}")
    lines += [
        "",
        "Coverage: share of data sets whose 95% interval contains the true value, over the runs "
        "that gave an interval. Size: share rejecting a true null at alpha 0.05. Disagree: share "
        "where p < 0.05 and 'the interval excludes 0' disagree. ± is the Monte Carlo standard "
        "error. 'too few': runs flagged too_few or without interval ends (counted apart); "
        "'point': intervals with low == high. Bold ✗: misses its target at a size where the "
        "target must hold.",
    ]
    return "\n".join(lines)


def render(
    results: Results, sizes: list[int], reps: int, reps_large: int, label: str, wall: float
) -> str:
    names = list(dict.fromkeys(k[0] for k in results))
    parts = [
        header(reps, reps_large, sizes, label),
        "## Misses\n\n" + summary_table(results, sizes),
        "## Routines",
        *(routine_table(name, results, sizes) for name in names),
        f"Wall time: {wall:.0f} s.",
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Parse the options, simulate, print and write the record."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--reps", type=int, default=500, help="data sets per cell, n < 1000")
    parser.add_argument("--reps-large", type=int, default=100, help="data sets per cell, n >= 1000")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--routines", default=",".join(ROUTINES), help="a comma-separated subset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--label", default="", help="a line naming the code measured")
    parser.add_argument("--list", action="store_true", help="list the routines and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, spec in ROUTINES.items():
            print(f"{name}: {', '.join(r.name for r in spec.rows)} -- {spec.calls}")
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [s.strip() for s in args.routines.split(",") if s.strip()]
    unknown = sorted(set(names) - set(ROUTINES))
    if unknown:
        parser.error(f"unknown routines {unknown}; --list shows them")
    start = time.perf_counter()
    results = run_all(names, sizes, args.reps, args.workers, args.seed, args.reps_large)
    wall = time.perf_counter() - start
    text = render(results, sizes, args.reps, args.reps_large, args.label, wall)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
