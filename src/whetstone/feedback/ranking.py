"""Pairwise preferences: Bradley-Terry ratings with bootstrap intervals, win rates, position bias.

The Bradley-Terry model gives each model a strength theta and P(i beats j) =
sigmoid(theta_i - theta_j). It is fitted by maximum likelihood with Newton's method; a tie or a
"both bad" verdict counts as half a win for each side, as in FastChat's ``compute_mle_elo``
(whose logistic regression reaches the same optimum). Ratings are reported on the Elo scale of
Chatbot Arena: 400 / ln(10) * theta + 1000, so that their mean is 1000. A weak Gaussian prior
(``l2``) keeps the ratings finite when a model wins or loses every battle it played; with
``l2=0`` the fit is the plain maximum-likelihood estimate. Intervals are percentile intervals
over bootstrap resamples of the battles, as Chatbot Arena computes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy import stats as sps

from whetstone.evaluate.statistics import percentile_interval, resample_indices, wilson_ci
from whetstone.records import FeedbackJudgment, MetricValue

Winner = Literal["a", "b", "tie", "both_bad"]
SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
DEFAULT_L2 = 1e-3


@dataclass(frozen=True)
class Battle:
    """One arena verdict: model_a was shown on the left, model_b on the right."""

    model_a: str
    model_b: str
    winner: Winner
    participant: str = ""
    item_id: str = ""


class RankingEntry(BaseModel):
    """A model's Bradley-Terry rating (Elo scale) with its bootstrap interval."""

    model: str
    rank: int
    rating: float
    # None (with too_few and a note) when the model has fewer than MIN_BATTLES battles
    ci_low: float | None
    ci_high: float | None
    strength: float
    """theta, the natural log-odds strength (mean 0 over the ranked models)."""
    battles: int
    wins: float
    """Battles won, ties and both-bad verdicts counted as half."""
    too_few: bool = False
    note: str | None = None


class Ranking(BaseModel):
    """Bradley-Terry ranking and the pairwise tables behind it (rows/columns in ``models``)."""

    method: str = "bradley_terry"
    scale: float = SCALE
    init_rating: float = INIT_RATING
    l2: float = DEFAULT_L2
    n_battles: int
    n_bootstrap: int
    connected: bool
    entries: list[RankingEntry]
    models: list[str]
    battle_counts: list[list[int]]
    win_rate: list[list[float | None]]
    """Share of battles of row over column won by row (ties as half); None where none."""
    predicted_win_rate: list[list[float]]
    """P(row beats column) under the fitted model."""


class PositionBias(BaseModel):
    """Does the left answer win more often than chance among decisive battles?"""

    decisive: int
    left_wins: int
    left_rate: MetricValue | None
    p_value: float | None
    ties: int
    both_bad: int
    biased: bool


def battles_from_judgments(judgments: Sequence[FeedbackJudgment]) -> list[Battle]:
    """The arena battles in a list of judgments (two records per battle, joined back)."""
    sides: dict[tuple[str, str, str, str], dict[int, FeedbackJudgment]] = {}
    for j in judgments:
        if j.mode != "arena" or j.arena_outcome is None or j.position not in (0, 1):
            continue
        pair = tuple(sorted((j.model, j.opponent or "")))
        key = (j.participant, j.item_id, pair[0], pair[1])
        sides.setdefault(key, {})[int(j.position or 0)] = j
    battles = []
    for (participant, item, _, _), by_pos in sides.items():
        if 0 not in by_pos or 1 not in by_pos:
            continue
        left, right = by_pos[0], by_pos[1]
        outcome = left.arena_outcome
        winner: Winner = (
            "a" if outcome == "win" else "b" if outcome == "loss" else outcome  # type: ignore[assignment]
        )
        battles.append(Battle(left.model, right.model, winner, participant, item))
    return battles


def win_matrix(models: Sequence[str], battles: Sequence[Battle]) -> np.ndarray:
    """W[i, j] = battles model i won against model j, ties and both-bad counting half."""
    index = {m: k for k, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for b in battles:
        i, j = index[b.model_a], index[b.model_b]
        if b.winner == "a":
            w[i, j] += 1
        elif b.winner == "b":
            w[j, i] += 1
        else:
            w[i, j] += 0.5
            w[j, i] += 0.5
    return w


def _objective(theta: np.ndarray, w: np.ndarray, l2: float) -> float:
    """Negative log-likelihood plus the prior and a mean-zero term (which fixes the shift)."""
    d = theta[:, None] - theta[None, :]
    nll = float(np.sum(w * np.logaddexp(0.0, -d)))
    return nll + 0.5 * l2 * float(theta @ theta) + 0.5 * float(theta.sum()) ** 2


def fit_bradley_terry(
    w: np.ndarray,
    *,
    l2: float = DEFAULT_L2,
    theta0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> np.ndarray:
    """Strengths theta (mean 0) maximizing the Bradley-Terry likelihood of win matrix ``w``.

    Newton's method with a backtracking line search on the negative log-likelihood plus
    ``l2 / 2 * |theta|^2``; the shift the likelihood cannot see is fixed at mean 0.
    """
    w = np.asarray(w, dtype=float)
    p = w.shape[0]
    theta = np.zeros(p) if theta0 is None else np.array(theta0, dtype=float)
    n = w + w.T
    value = _objective(theta, w, l2)
    for _ in range(max_iter):
        prob = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
        grad = -(w - n * prob).sum(axis=1) + l2 * theta + theta.sum()
        curv = n * prob * (1.0 - prob)
        hess = np.diag(curv.sum(axis=1)) - curv + l2 * np.eye(p) + np.ones((p, p))
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            candidate = theta - t * step
            new = _objective(candidate, w, l2)
            if new <= value + 1e-4 * t * float(grad @ -step) or t < 1e-8:
                break
            t *= 0.5
        theta, value = candidate, new
        if float(np.max(np.abs(t * step))) < tol:
            break
    return theta - theta.mean()


def to_rating(theta: np.ndarray) -> np.ndarray:
    """Strengths on Chatbot Arena's Elo scale (400 points = a factor 10 in odds)."""
    return SCALE / math.log(BASE) * np.asarray(theta) + INIT_RATING


def _connected(w: np.ndarray) -> bool:
    """Whether the graph of models that met in battle is connected."""
    p = w.shape[0]
    adj = (w + w.T) > 0
    seen, stack = {0}, [0]
    while stack:
        i = stack.pop()
        for j in np.flatnonzero(adj[i]):
            if int(j) not in seen:
                seen.add(int(j))
                stack.append(int(j))
    return len(seen) == p


#: Fewest battles of a model for an interval of its rating (one battle resamples to a point).
MIN_BATTLES = 5


def _entry(
    model: str,
    rank: int,
    rating: float,
    ends: tuple[float, float],
    theta: float,
    counts: np.ndarray,
    wins: np.ndarray,
) -> RankingEntry:
    """One model's ranking entry, its interval withheld below MIN_BATTLES battles."""
    battles = int(counts.sum())
    few = battles < MIN_BATTLES
    return RankingEntry(
        model=model,
        rank=rank,
        rating=float(rating),
        ci_low=None if few else float(ends[0]),
        ci_high=None if few else float(ends[1]),
        strength=float(theta),
        battles=battles,
        wins=float(wins.sum()),
        too_few=few,
        note=f"{battles} battle(s): an interval needs {MIN_BATTLES}" if few else None,
    )


def rank_models(
    battles: Sequence[Battle],
    *,
    l2: float = DEFAULT_L2,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Ranking | None:
    """The Bradley-Terry ranking with bootstrap intervals over battles; None without battles."""
    if not battles:
        return None
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {m: k for k, m in enumerate(models)}
    p = len(models)
    w = win_matrix(models, battles)
    theta = fit_bradley_terry(w, l2=l2)
    # bootstrap: resample battles; each battle adds its win weights to one or two cells
    cells_a = np.array([index[b.model_a] * p + index[b.model_b] for b in battles])
    cells_b = np.array([index[b.model_b] * p + index[b.model_a] for b in battles])
    weight_a = np.array([{"a": 1.0, "b": 0.0}.get(b.winner, 0.5) for b in battles])
    weight_b = 1.0 - weight_a
    thetas = []
    for idx in resample_indices(len(battles), n_boot=n_boot, seed=seed):
        for row in idx:
            wb = np.bincount(cells_a[row], weight_a[row], p * p) + np.bincount(
                cells_b[row], weight_b[row], p * p
            )
            thetas.append(fit_bradley_terry(wb.reshape(p, p), l2=l2, theta0=theta))
    low, high = percentile_interval(to_rating(np.array(thetas)), confidence)
    ratings = to_rating(theta)
    counts = np.zeros((p, p), dtype=int)
    for b in battles:
        counts[index[b.model_a], index[b.model_b]] += 1
        counts[index[b.model_b], index[b.model_a]] += 1
    order = np.argsort(-ratings, kind="stable")
    entries = [
        _entry(models[k], rank + 1, ratings[k], (low[k], high[k]), theta[k], counts[k], w[k])
        for rank, k in enumerate(order)
    ]
    prob = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    return Ranking(
        l2=l2,
        n_battles=len(battles),
        n_bootstrap=n_boot,
        connected=_connected(w),
        entries=entries,
        models=models,
        battle_counts=counts.tolist(),
        win_rate=[
            [float(w[i, j] / counts[i, j]) if counts[i, j] else None for j in range(p)]
            for i in range(p)
        ],
        predicted_win_rate=prob.tolist(),
    )


def position_bias(battles: Sequence[Battle], alpha: float = 0.05) -> PositionBias | None:
    """An exact two-sided binomial test of left wins against 1/2 over decisive battles."""
    if not battles:
        return None
    decisive = [b for b in battles if b.winner in ("a", "b")]
    left = sum(1 for b in decisive if b.winner == "a")
    p_value = None
    rate = None
    if decisive:
        p_value = float(sps.binomtest(left, len(decisive), 0.5).pvalue)
        lo, hi = wilson_ci(left, len(decisive))
        rate = MetricValue(value=left / len(decisive), ci_low=lo, ci_high=hi, n=len(decisive))
    return PositionBias(
        decisive=len(decisive),
        left_wins=left,
        left_rate=rate,
        p_value=p_value,
        ties=sum(1 for b in battles if b.winner == "tie"),
        both_bad=sum(1 for b in battles if b.winner == "both_bad"),
        biased=p_value is not None and p_value < alpha,
    )
