"""Agreement statistics against scikit-learn (Cohen), statsmodels (Fleiss) and the
krippendorff package (alpha), on simulated ratings with missing values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from whetstone.evaluate.statistics import bca_interval
from whetstone.feedback.agreement import (
    agreement,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    krippendorff_alpha_ci,
    pairwise_kappas,
)

krippendorff = pytest.importorskip("krippendorff")  # dev dependencies: the references
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
sm_fleiss_kappa = inter_rater.fleiss_kappa


def simulated(
    n_units: int = 60, n_raters: int = 5, missing: float = 0.3, seed: int = 0
) -> np.ndarray:
    """(raters x units) Likert ratings that share a latent value per unit, NaN where missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, n_units)
    noise = rng.integers(-1, 2, (n_raters, n_units)) * (rng.random((n_raters, n_units)) < 0.5)
    data = np.clip(truth + noise, 1, 5).astype(float)
    data[rng.random(data.shape) < missing] = np.nan
    return data


def as_ratings(data: np.ndarray) -> dict[int, dict[str, int]]:
    return {
        u: {f"r{r}": int(data[r, u]) for r in range(data.shape[0]) if not np.isnan(data[r, u])}
        for u in range(data.shape[1])
    }


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(weights: str | None) -> None:
    data = simulated(missing=0.0, seed=1)
    a, b = data[0].astype(int).tolist(), data[1].astype(int).tolist()
    assert cohen_kappa(a, b, weights=weights) == pytest.approx(
        cohen_kappa_score(a, b, weights=weights)
    )  # type: ignore[arg-type]


def test_pairwise_kappas_use_the_shared_units() -> None:
    data = simulated(seed=2)
    ratings = as_ratings(data)
    pairs = pairwise_kappas(ratings, [1, 2, 3, 4, 5], weighted=True)
    assert len(pairs) == 10
    for pair in pairs:
        ra, rb = int(pair.rater_a[1:]), int(pair.rater_b[1:])
        both = ~np.isnan(data[ra]) & ~np.isnan(data[rb])
        a, b = data[ra, both].astype(int), data[rb, both].astype(int)
        assert pair.n == int(both.sum())
        assert pair.kappa == pytest.approx(cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5]))
        assert pair.weighted_kappa == pytest.approx(
            cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")
        )


def test_fleiss_kappa_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    table = np.array([rng.multinomial(4, rng.dirichlet([2, 1, 1])) for _ in range(40)])
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss_kappa(table, method="fleiss"))


def test_fleiss_kappa_with_varying_raters_is_pairwise_agreement() -> None:
    # 2 of 2 agree, 2 of 3 agree, 0 of 2: per-unit agreement 1, 1/3, 0; categories 4:3 overall
    table = np.array([[2, 0], [2, 1], [1, 1]])
    p_bar = (1 + 1 / 3 + 0) / 3
    p_e = (5 / 7) ** 2 + (2 / 7) ** 2
    assert fleiss_kappa(table) == pytest.approx((p_bar - p_e) / (1 - p_e))


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_alpha_matches_the_package(level: str) -> None:
    data = simulated(seed=4)
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(as_ratings(data), level) == pytest.approx(expected)  # type: ignore[arg-type]


def test_krippendorff_alpha_on_labels_with_missing_values() -> None:
    labels = ["up", "down"]
    rng = np.random.default_rng(5)
    data = rng.integers(0, 2, (3, 30)).astype(float)
    data[1] = np.where(rng.random(30) < 0.8, data[0], data[1])
    data[rng.random(data.shape) < 0.2] = np.nan
    ratings = {
        u: {f"r{r}": labels[int(data[r, u])] for r in range(3) if not np.isnan(data[r, u])}
        for u in range(30)
    }
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert krippendorff_alpha(ratings, "nominal") == pytest.approx(expected)


def test_alpha_interval_is_a_bootstrap_over_units() -> None:
    data = simulated(n_units=40, seed=6)
    ratings = as_ratings(data)
    result = krippendorff_alpha_ci(ratings, "ordinal", n_boot=300, seed=1)
    assert result is not None and result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < result.value < result.ci_high
    # the same resampling done by hand: units drawn with replacement, alpha recomputed
    rng = np.random.default_rng(1)
    pairable = [u for u, v in ratings.items() if len(v) >= 2]
    boots = []
    for idx in rng.integers(0, len(pairable), size=(300, len(pairable))):
        cols = [data[:, pairable[i]] for i in idx]
        boots.append(
            krippendorff.alpha(reliability_data=np.array(cols).T, level_of_measurement="ordinal")
        )
    # BCa: acceleration from leave-one-unit-out alphas, also computed by the package
    jack = [
        krippendorff.alpha(
            reliability_data=np.delete(data[:, pairable], k, axis=1), level_of_measurement="ordinal"
        )
        for k in range(len(pairable))
    ]
    point = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    low, high = bca_interval(point, np.array(boots), np.array(jack), len(pairable))
    assert (result.ci_low, result.ci_high) == pytest.approx((float(low), float(high)), abs=1e-9)
    assert result.n == len(pairable)


def test_agreement_summary_of_one_question() -> None:
    data = simulated(n_units=30, n_raters=3, missing=0.0, seed=8)
    ratings = as_ratings(data)
    result = agreement("likert", ratings, "ordinal", n_boot=100)
    assert (result.units, result.raters, result.ratings) == (30, 3, 90)
    table = np.zeros((30, 5))
    for u, values in ratings.items():
        for v in values.values():
            table[u, v - 1] += 1
    assert result.fleiss_kappa == pytest.approx(sm_fleiss_kappa(table))
    kappas = [
        cohen_kappa_score(data[a].astype(int), data[b].astype(int), labels=[1, 2, 3, 4, 5])
        for a, b in itertools.combinations(range(3), 2)
    ]
    assert result.cohen_kappa == pytest.approx(np.mean(kappas))
    same = [np.mean(data[r] == data[o]) for r in range(3) for o in range(3) if o != r]
    assert result.percent_agreement == pytest.approx(np.mean(same))
    r0 = next(r for r in result.per_rater if r.rater == "r0")
    assert r0.agreement == pytest.approx(
        np.mean([np.mean(data[0] == data[1]), np.mean(data[0] == data[2])])
    )
