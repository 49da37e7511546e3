"""Pairwise preferences: Bradley-Terry ratings with bootstrap intervals, win rates, position bias.

The Bradley-Terry model gives each model a strength theta and P(i beats j) =
sigmoid(theta_i - theta_j). It is fitted by maximum likelihood with Newton's method; a tie or a
"both bad" verdict counts as half a win for each side, as in FastChat's ``compute_mle_elo``
(whose logistic regression reaches the same optimum). Ratings are reported on the Elo scale of
Chatbot Arena: 400 / ln(10) * theta + 1000, so that their mean is 1000. A weak Gaussian prior
(``l2``) keeps the ratings finite when a model wins or loses every battle it played; with
``l2=0`` the fit is the plain maximum-likelihood estimate. Intervals are BCa intervals (tails
widened for few items) over bootstrap resamples of whole items: Chatbot Arena resamples
battles, which is the same when every battle has an item of its own, but undercovers when
several participants judge the same item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy import stats as sps

from whetstone.evaluate.statistics import (
    bca_interval,
    resample_counts,
    resample_indices,
)
from whetstone.feedback.proportions import share_by_cluster
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
    """A model's Bradley-Terry rating (Elo scale) with its bootstrap interval.

    The interval is None, with ``too_few`` set and a ``note``, when it would not be honest:
    fewer than MIN_BATTLES battles, all won or all lost, or opponents not connected.
    """

    model: str
    rank: int
    rating: float
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


def _objectives(theta: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """``_objective`` of each row of a stack: theta (B, p), win matrices w (B, p, p)."""
    d = theta[:, :, None] - theta[:, None, :]
    nll = np.sum(w * np.logaddexp(0.0, -d), axis=(1, 2))
    return nll + 0.5 * l2 * np.sum(theta * theta, axis=1) + 0.5 * theta.sum(axis=1) ** 2


def _newton_steps(theta: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Newton step and gradient of every row of a stack (as in ``fit_bradley_terry``)."""
    p = theta.shape[1]
    n = w + np.swapaxes(w, 1, 2)
    prob = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))
    grad = -(w - n * prob).sum(axis=2) + l2 * theta + theta.sum(axis=1, keepdims=True)
    curv = n * prob * (1.0 - prob)
    hess = -curv + l2 * np.eye(p) + np.ones((p, p))
    hess[:, np.arange(p), np.arange(p)] += curv.sum(axis=2)
    return np.linalg.solve(hess, grad[:, :, None])[:, :, 0], grad


def _fit_many(
    w: np.ndarray, l2: float, theta0: np.ndarray, tol: float = 1e-10, max_iter: int = 200
) -> np.ndarray:
    """``fit_bradley_terry`` on a stack of win matrices (B, p, p) at once: the same Newton
    steps and backtracking, row by row, vectorized over the stack (bootstrap refits)."""
    theta = np.broadcast_to(np.asarray(theta0, dtype=float), w.shape[:2]).copy()
    value = _objectives(theta, w, l2)
    active = np.ones(w.shape[0], dtype=bool)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        step, grad = _newton_steps(theta[rows], w[rows], l2)
        t = np.ones(rows.size)
        todo = np.ones(rows.size, dtype=bool)
        slope = np.einsum("ij,ij->i", grad, -step)
        while todo.any():  # backtracking, each row until its own Armijo condition holds
            k = np.flatnonzero(todo)
            trial = theta[rows[k]] - t[k, None] * step[k]
            new = _objectives(trial, w[rows[k]], l2)
            done = (new <= value[rows[k]] + 1e-4 * t[k] * slope[k]) | (t[k] < 1e-8)
            theta[rows[k[done]]], value[rows[k[done]]] = trial[done], new[done]
            todo[k[done]] = False
            t[k[~done]] *= 0.5
        active[rows] = np.max(np.abs(t[:, None] * step), axis=1) >= tol
    return theta - theta.mean(axis=1, keepdims=True)


@dataclass(frozen=True)
class _Design:
    """The battles as additive win weights: each battle adds to two cells of the win matrix;
    ``cluster`` is the independent unit each battle belongs to (its item)."""

    p: int
    cells_a: np.ndarray
    cells_b: np.ndarray
    weight_a: np.ndarray
    cluster: np.ndarray
    n_clusters: int


def _design(battles: Sequence[Battle], index: dict[str, int]) -> _Design:
    """Cells, weights and item clusters of the battles (a battle without an item id is a
    cluster of its own)."""
    p = len(index)
    keys = [b.item_id or f"\0battle {k}" for k, b in enumerate(battles)]
    codes = {key: c for c, key in enumerate(dict.fromkeys(keys))}
    return _Design(
        p=p,
        cells_a=np.array([index[b.model_a] * p + index[b.model_b] for b in battles]),
        cells_b=np.array([index[b.model_b] * p + index[b.model_a] for b in battles]),
        weight_a=np.array([{"a": 1.0, "b": 0.0}.get(b.winner, 0.5) for b in battles]),
        cluster=np.array([codes[key] for key in keys]),
        n_clusters=len(codes),
    )


def _cluster_tables(d: _Design) -> np.ndarray:
    """Each cluster's contribution to the win matrix, flattened: shape (clusters, p * p)."""
    out = np.zeros((d.n_clusters, d.p * d.p))
    np.add.at(out, (d.cluster, d.cells_a), d.weight_a)
    np.add.at(out, (d.cluster, d.cells_b), 1.0 - d.weight_a)
    return out


def _bootstrap_ratings(
    d: _Design, theta: np.ndarray, l2: float, n_boot: int, seed: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """BCa interval of every rating: whole items resampled (several participants judging one
    item are one unit, not several), leave-one-item-out refits for the acceleration."""
    tables = _cluster_tables(d)
    p = d.p
    parts = []
    for idx in resample_indices(d.n_clusters, n_boot=n_boot, seed=seed):
        stacked = (resample_counts(idx, d.n_clusters) @ tables).reshape(-1, p, p)
        parts.append(_fit_many(stacked, l2, theta))
    total = tables.sum(axis=0)
    jack = _fit_many((total[None, :] - tables).reshape(-1, p, p), l2, theta)
    point = to_rating(theta)
    low, high = bca_interval(
        point, to_rating(np.concatenate(parts)), to_rating(jack), d.n_clusters, confidence
    )
    return np.asarray(low), np.asarray(high)


def _withheld(battles: int, wins: float, connected: bool) -> str | None:
    """Why a model's rating gets no interval, or None when it gets one."""
    if not connected:
        return "the models did not all meet (directly or through others): not comparable"
    if battles < MIN_BATTLES:
        return f"{battles} battle(s): an interval needs {MIN_BATTLES}"
    if wins in (0.0, float(battles)):
        return "won or lost every battle: the rating is bounded only by the prior"
    return None


def _entry(
    model: str,
    rank: int,
    rating: float,
    ends: tuple[float, float],
    theta: float,
    counts: np.ndarray,
    wins: np.ndarray,
    connected: bool = True,
) -> RankingEntry:
    """One model's ranking entry; its interval is withheld (too_few, with a note) below
    MIN_BATTLES battles, when it won or lost them all, or when the battle graph is not
    connected."""
    battles = int(counts.sum())
    note = _withheld(battles, float(wins.sum()), connected)
    return RankingEntry(
        model=model,
        rank=rank,
        rating=float(rating),
        ci_low=None if note else float(ends[0]),
        ci_high=None if note else float(ends[1]),
        strength=float(theta),
        battles=battles,
        wins=float(wins.sum()),
        too_few=note is not None,
        note=note,
    )


def rank_models(
    battles: Sequence[Battle],
    *,
    l2: float = DEFAULT_L2,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Ranking | None:
    """The Bradley-Terry ranking with BCa bootstrap intervals over items; None without battles.

    The resampled unit is the item (battles sharing an item id correlate: the same answers
    judged by several people; with one battle per item this is the battle bootstrap). Battles
    judged on one item by three people made intervals that resample battles cover about 77%.
    A model's interval is withheld (``too_few`` and a note) when it has fewer than
    MIN_BATTLES battles, won or lost every one (the rating then rests on the prior), or when
    the models do not form one connected set of opponents (ratings are then not comparable).
    """
    if not battles:
        return None
    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {m: k for k, m in enumerate(models)}
    p = len(models)
    w = win_matrix(models, battles)
    theta = fit_bradley_terry(w, l2=l2)
    low, high = _bootstrap_ratings(_design(battles, index), theta, l2, n_boot, seed, confidence)
    ratings = to_rating(theta)
    counts = np.zeros((p, p), dtype=int)
    for b in battles:
        counts[index[b.model_a], index[b.model_b]] += 1
        counts[index[b.model_b], index[b.model_a]] += 1
    connected = _connected(w)
    order = np.argsort(-ratings, kind="stable")
    entries = [
        _entry(
            models[k], rank + 1, ratings[k], (low[k], high[k]), theta[k], counts[k], w[k], connected
        )
        for rank, k in enumerate(order)
    ]
    prob = 1.0 / (1.0 + np.exp(-(theta[:, None] - theta[None, :])))
    return Ranking(
        l2=l2,
        n_battles=len(battles),
        n_bootstrap=n_boot,
        connected=connected,
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
    """An exact two-sided binomial test of left wins against 1/2 over decisive battles.

    The sides are drawn at random for every battle, so with no side preference each decisive
    verdict is a fair coin and the binomial test is exact. The left-win rate's interval is
    clustered by participant (a preference for one side is a habit of a person, so one
    person's verdicts correlate); battles without a participant count as independent.
    """
    if not battles:
        return None
    decisive = [b for b in battles if b.winner in ("a", "b")]
    left = sum(1 for b in decisive if b.winner == "a")
    p_value = None
    rate = None
    if decisive:
        p_value = float(sps.binomtest(left, len(decisive), 0.5).pvalue)
        people = [b.participant or f"\0battle {k}" for k, b in enumerate(decisive)]
        rate = share_by_cluster([b.winner == "a" for b in decisive], people, "participant")
    return PositionBias(
        decisive=len(decisive),
        left_wins=left,
        left_rate=rate,
        p_value=p_value,
        ties=sum(1 for b in battles if b.winner == "tie"),
        both_bad=sum(1 for b in battles if b.winner == "both_bad"),
        biased=p_value is not None and p_value < alpha,
    )
