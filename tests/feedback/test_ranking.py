"""Bradley-Terry ratings against FastChat's compute_mle_elo (scikit-learn logistic regression,
copied below from fastchat/serve/monitor/elo_analysis.py) and a direct scipy fit; bootstrap
intervals against the same fit on the same resamples; win rates and position bias against
pandas and scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from sklearn.linear_model import LogisticRegression

from whetstone.evaluate.statistics import bca_interval, resample_indices
from whetstone.feedback.ranking import (
    Battle,
    fit_bradley_terry,
    position_bias,
    rank_models,
    to_rating,
    win_matrix,
)

MODELS = ["alpha", "beta", "gamma", "delta"]
WINNER = {"a": "model_a", "b": "model_b", "tie": "tie", "both_bad": "tie (bothbad)"}


def simulate(
    n: int, seed: int = 0, strengths: tuple[float, ...] = (0.9, 0.3, 0.0, -0.7)
) -> list[Battle]:
    """Battles between random pairs with Bradley-Terry outcomes, some ties and both-bad."""
    rng = np.random.default_rng(seed)
    battles = []
    for _ in range(n):
        i, j = rng.choice(len(MODELS), 2, replace=False)
        p = 1 / (1 + math.exp(strengths[j] - strengths[i]))
        u = rng.random()
        winner = "a" if u < 0.85 * p else "b" if u < 0.85 else ("tie" if u < 0.93 else "both_bad")
        battles.append(Battle(MODELS[i], MODELS[j], winner))  # type: ignore[arg-type]
    return battles


def compute_mle_elo(
    df: pd.DataFrame,
    SCALE: int = 400,
    BASE: int = 10,
    INIT_RATING: int = 1000,
    C: float | None = None,
) -> pd.Series:
    """FastChat's compute_mle_elo (penalty=None there; ``C`` adds its L2 variant)."""
    ptbl_a_win = pd.pivot_table(
        df[df["winner"] == "model_a"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    if sum(df["winner"].isin(["tie", "tie (bothbad)"])) == 0:
        ptbl_tie = pd.DataFrame(0, index=ptbl_a_win.index, columns=ptbl_a_win.columns)
    else:
        ptbl_tie = pd.pivot_table(
            df[df["winner"].isin(["tie", "tie (bothbad)"])],
            index="model_a",
            columns="model_b",
            aggfunc="size",
            fill_value=0,
        )
        ptbl_tie = ptbl_tie + ptbl_tie.T
    ptbl_b_win = pd.pivot_table(
        df[df["winner"] == "model_b"],
        index="model_a",
        columns="model_b",
        aggfunc="size",
        fill_value=0,
    )
    ptbl_win = ptbl_a_win * 2 + ptbl_b_win.T * 2 + ptbl_tie
    models = pd.Series(np.arange(len(ptbl_win.index)), index=ptbl_win.index)
    p = len(models)
    X = np.zeros([p * (p - 1) * 2, p])
    Y = np.zeros(p * (p - 1) * 2)
    cur_row = 0
    sample_weights = []
    for m_a in ptbl_win.index:
        for m_b in ptbl_win.columns:
            if m_a == m_b:
                continue
            if math.isnan(ptbl_win.loc[m_a, m_b]) or math.isnan(ptbl_win.loc[m_b, m_a]):
                continue
            X[cur_row, models[m_a]] = +math.log(BASE)
            X[cur_row, models[m_b]] = -math.log(BASE)
            Y[cur_row] = 1.0
            sample_weights.append(ptbl_win.loc[m_a, m_b])
            X[cur_row + 1, models[m_a]] = math.log(BASE)
            X[cur_row + 1, models[m_b]] = -math.log(BASE)
            Y[cur_row + 1] = 0.0
            sample_weights.append(ptbl_win.loc[m_b, m_a])
            cur_row += 2
    X = X[:cur_row]
    Y = Y[:cur_row]
    if C is None:
        lr = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12, max_iter=10_000)
    else:
        lr = LogisticRegression(fit_intercept=False, C=C, tol=1e-12, max_iter=10_000)
    lr.fit(X, Y, sample_weight=sample_weights)
    elo_scores = SCALE * lr.coef_[0] + INIT_RATING
    return pd.Series(elo_scores, index=models.index)


def frame(battles: list[Battle]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"model_a": b.model_a, "model_b": b.model_b, "winner": WINNER[b.winner]} for b in battles]
    )


def test_maximum_likelihood_matches_fastchat() -> None:
    battles = simulate(400)
    models = sorted(MODELS)
    theta = fit_bradley_terry(win_matrix(models, battles), l2=0.0)
    reference = compute_mle_elo(frame(battles))
    # FastChat's unpenalized fit leaves the ratings' mean wherever lbfgs stops; ours is 1000
    reference = reference - reference.mean() + 1000
    np.testing.assert_allclose(to_rating(theta), reference[models].to_numpy(), atol=1e-3)


def test_prior_matches_penalized_logistic_regression() -> None:
    battles = simulate(120, seed=3)
    models = sorted(MODELS)
    lam = 0.05
    theta = fit_bradley_terry(win_matrix(models, battles), l2=lam)
    # FastChat's rows weigh each battle 4 times and use log(10) features: C = 1 / (4 lam ln10^2)
    reference = compute_mle_elo(frame(battles), C=1 / (4 * lam * math.log(10) ** 2))
    np.testing.assert_allclose(to_rating(theta), reference[models].to_numpy(), atol=1e-3)


def test_maximum_likelihood_matches_scipy_minimize() -> None:
    battles = simulate(200, seed=5)
    models = sorted(MODELS)
    w = win_matrix(models, battles)

    def nll(free: np.ndarray) -> float:
        theta = np.append(free, 0.0)  # the last model fixed at 0
        d = theta[:, None] - theta[None, :]
        return float(np.sum(w * np.logaddexp(0, -d)))

    result = optimize.minimize(
        nll, np.zeros(len(models) - 1), method="BFGS", options={"gtol": 1e-10}
    )
    reference = np.append(result.x, 0.0)
    ours = fit_bradley_terry(w, l2=0.0)
    np.testing.assert_allclose(ours, reference - reference.mean(), atol=1e-5)


def test_prior_keeps_a_model_that_never_wins_finite() -> None:
    battles = [Battle("a", "b", "a")] * 5 + [Battle("b", "c", "a")] * 3 + [Battle("a", "c", "tie")]
    ranking = rank_models(battles, n_boot=50)
    assert ranking is not None
    ratings = {e.model: e.rating for e in ranking.entries}
    assert ratings["a"] > ratings["b"] > ratings["c"] > 0
    for e in ranking.entries:  # c has 4 battles: too few for an interval, flagged
        if e.battles >= 5:
            assert np.isfinite([e.ci_low, e.ci_high]).all()
        else:
            assert e.ci_low is None and e.too_few and e.note


def test_one_battle_is_flagged_instead_of_a_point_interval() -> None:
    """One battle resamples to itself: the interval was (1506.8, 1506.8)."""
    ranking = rank_models([Battle("a", "b", "a")], n_boot=50)
    assert ranking is not None
    for e in ranking.entries:
        assert e.too_few and e.ci_low is None and e.ci_high is None and "1 battle" in str(e.note)


def logistic_elo(battles: list[Battle], models: list[str]) -> np.ndarray:
    """Elo ratings from a direct logistic fit (scipy BFGS) with one row per battle: feature
    +ln10 for the left model and -ln10 for the right, target the left's win (ties: 1/2)."""
    x = np.zeros((len(battles), len(models)))
    for k, b in enumerate(battles):
        x[k, models.index(b.model_a)], x[k, models.index(b.model_b)] = math.log(10), -math.log(10)
    y = np.array([{"a": 1.0, "b": 0.0}.get(b.winner, 0.5) for b in battles])

    def loss(beta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ beta
        value = np.sum(np.logaddexp(0, z) - y * z)
        return float(value), x.T @ (1 / (1 + np.exp(-z)) - y)

    beta = optimize.minimize(
        loss, np.zeros(len(models)), jac=True, method="BFGS", options={"gtol": 1e-10}
    ).x
    return 400 * (beta - beta.mean()) + 1000


def test_bootstrap_intervals_match_refits_on_the_same_resamples() -> None:
    """BCa over the same resamples, each refitted by an independent logistic fit; the
    acceleration from leave-one-battle-out refits (every battle is its own item here)."""
    battles = simulate(150, seed=7)
    models = sorted(MODELS)
    n_boot = 100
    ranking = rank_models(battles, n_boot=n_boot, seed=11, l2=0.0)
    assert ranking is not None
    boots = [
        logistic_elo([battles[k] for k in row], models)
        for idx in resample_indices(len(battles), n_boot=n_boot, seed=11)
        for row in idx
    ]
    jack = [logistic_elo(battles[:k] + battles[k + 1 :], models) for k in range(len(battles))]
    point = logistic_elo(battles, models)
    low, high = bca_interval(point, np.array(boots), np.array(jack), len(battles))
    got = {e.model: e for e in ranking.entries}
    for k, m in enumerate(models):
        assert got[m].ci_low == pytest.approx(low[k], abs=0.01)
        assert got[m].ci_high == pytest.approx(high[k], abs=0.01)
        assert got[m].ci_low < got[m].rating < got[m].ci_high


def test_win_rates_and_counts_match_pandas() -> None:
    battles = simulate(300, seed=2)
    ranking = rank_models(battles, n_boot=10)
    assert ranking is not None
    df = frame(battles)
    for i, a in enumerate(ranking.models):
        for j, b in enumerate(ranking.models):
            if a == b:
                continue
            ab = df[(df.model_a == a) & (df.model_b == b)]
            ba = df[(df.model_a == b) & (df.model_b == a)]
            n = len(ab) + len(ba)
            wins = (ab.winner == "model_a").sum() + (ba.winner == "model_b").sum()
            ties = ab.winner.str.startswith("tie").sum() + ba.winner.str.startswith("tie").sum()
            assert ranking.battle_counts[i][j] == n
            assert ranking.win_rate[i][j] == pytest.approx((wins + ties / 2) / n)
            pa = ranking.predicted_win_rate[i][j]
            ea, eb = (next(e.strength for e in ranking.entries if e.model == m) for m in (a, b))
            assert pa == pytest.approx(1 / (1 + math.exp(eb - ea)))
    assert ranking.connected


def test_position_bias_is_an_exact_binomial_test() -> None:
    rng = np.random.default_rng(4)
    battles = [
        Battle("x", "y", "a" if rng.random() < 0.7 else rng.choice(["b", "b", "tie"]))  # type: ignore[arg-type]
        for _ in range(80)
    ]
    bias = position_bias(battles)
    assert bias is not None and bias.left_rate is not None
    decisive = [b for b in battles if b.winner in ("a", "b")]
    left = sum(b.winner == "a" for b in decisive)
    assert (bias.decisive, bias.left_wins) == (len(decisive), left)
    assert bias.p_value == pytest.approx(stats.binomtest(left, len(decisive)).pvalue)
    assert bias.biased
    ci = stats.binomtest(left, len(decisive)).proportion_ci(method="wilson")
    assert (bias.left_rate.ci_low, bias.left_rate.ci_high) == pytest.approx((ci.low, ci.high))
