"""Feedback statistics by simulation with known truth: coverage of shares clustered by item,
of Bradley-Terry ratings resampled by item and of Krippendorff's alpha; too-few flags."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest
from scipy import stats

from whetstone.feedback.agreement import MIN_UNITS, Ratings, krippendorff_alpha_ci
from whetstone.feedback.proportions import share_by_cluster
from whetstone.feedback.ranking import Battle, position_bias, rank_models, to_rating
from whetstone.feedback.summary import _mean_ci


def test_likert_share_covers_when_three_judges_rate_each_item() -> None:
    """Judges of one item agree more than chance: Wilson over judgments covered about 80%."""
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(300):
        item_p = rng.beta(0.8, 1.6, 30)  # each item's chance of a "5"; mean 1/3
        hits = [bool(h) for p in item_p for h in rng.random(3) < p]
        items = [str(i) for i in range(30) for _ in range(3)]
        share = share_by_cluster(hits, items)
        assert share is not None and share.ci_low is not None and share.ci_high is not None
        covered.append(share.ci_low <= 1 / 3 <= share.ci_high)
    assert np.mean(covered) >= 0.93


def test_thumbs_up_share_has_an_interval_without_spread_and_covers() -> None:
    """Thumbs up is 0/1: a clustered Wilson interval, not a bootstrap that needs spread. The
    bootstrap flagged 10-30% of campaigns of ten items with rare thumbs down as too few."""
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(300):
        item_p = rng.beta(1.8, 0.2, 10)  # mean 0.9: most judgments are thumbs up
        hits = [bool(h) for p in item_p for h in rng.random(3) < p]
        share = share_by_cluster(hits, [str(i) for i in range(10) for _ in range(3)])
        assert share is not None and not share.too_few and share.ci_low is not None
        assert share.ci_high is not None and share.ci_low < share.ci_high
        covered.append(share.ci_low <= 0.9 <= share.ci_high)
    assert np.mean(covered) >= 0.93
    every = share_by_cluster([True] * 90, [str(i) for i in range(30) for _ in range(3)])
    assert every is not None and every.ci_low is not None and 0.85 < every.ci_low < 1.0


def test_share_of_one_item_is_flagged_and_unclustered_share_is_wilson() -> None:
    """One item judged three times cannot tell how items vary: too few, not an interval."""
    one = share_by_cluster([True, True, False], ["q1"] * 3)
    assert one is not None and one.too_few and one.ci_low is None and one.ci_high is None
    assert one.note and "1 item" in one.note
    plain = share_by_cluster([True] * 7 + [False] * 3, [str(i) for i in range(10)])
    assert plain is not None and plain.method == "wilson"
    reference = stats.binomtest(7, 10).proportion_ci(method="wilson")
    assert (plain.ci_low, plain.ci_high) == pytest.approx((reference.low, reference.high))


def test_one_item_is_flagged_not_a_point_interval() -> None:
    """One item rated 3 by three judges gave the interval (3.0, 3.0)."""
    mean = _mean_ci([3.0, 3.0, 3.0], ["q1"] * 3, n_boot=100)
    assert mean is not None and mean.too_few and mean.ci_low is None and mean.note


MODELS = ["m0", "m1", "m2", "m3"]
THETA = np.array([0.6, 0.2, -0.2, -0.6])


def judged_battles(n_items: int, judges: int, rng: np.random.Generator) -> list[Battle]:
    """Each item shows a random pair to ``judges`` people; the item's own chance that the
    first model wins is Beta around the Bradley-Terry probability (so judges of one item
    agree more than chance) and the sides are drawn at random per battle."""
    out = []
    for item in range(n_items):
        i, j = rng.choice(4, 2, replace=False)
        mean = 1 / (1 + np.exp(THETA[j] - THETA[i]))
        p = rng.beta(mean, 1 - mean)
        for k in range(judges):
            first_left, first_wins = rng.random() < 0.5, rng.random() < p
            a, b = (i, j) if first_left else (j, i)
            winner = "a" if first_wins == first_left else "b"
            out.append(Battle(MODELS[a], MODELS[b], winner, f"p{k}", f"item{item}"))  # type: ignore[arg-type]
    return out


def test_bradley_terry_intervals_cover_when_several_people_judge_an_item() -> None:
    """Resampling battles (not items) covered 76-78% with three judges per item."""
    rng = np.random.default_rng(0)
    truth = dict(zip(MODELS, to_rating(THETA - THETA.mean()), strict=True))
    covered = []
    for rep in range(60):
        ranking = rank_models(judged_battles(20, 3, rng), n_boot=200, seed=rep)
        assert ranking is not None
        covered += [
            e.ci_low <= truth[e.model] <= e.ci_high
            for e in ranking.entries
            if e.ci_low is not None and e.ci_high is not None
        ]
    assert len(covered) >= 200 and np.mean(covered) >= 0.93


def test_bradley_terry_withholds_intervals_it_cannot_give() -> None:
    """All won, or models that never met: flagged with a note, never an interval."""
    swept = rank_models([Battle("a", "b", "a", item_id=str(k)) for k in range(8)], n_boot=50)
    assert swept is not None
    assert all(
        e.too_few and e.ci_low is None and "every battle" in str(e.note) for e in swept.entries
    )
    apart = [Battle("a", "b", w, item_id=f"x{k}") for k, w in enumerate("abababab")]  # type: ignore[arg-type]
    apart += [Battle("c", "d", w, item_id=f"y{k}") for k, w in enumerate("abababab")]  # type: ignore[arg-type]
    ranking = rank_models(apart, n_boot=50)
    assert ranking is not None and not ranking.connected
    assert all(e.too_few and e.ci_low is None and "meet" in str(e.note) for e in ranking.entries)


def test_position_bias_interval_is_clustered_by_participant() -> None:
    """Each participant has their own side preference (mean one half): Wilson over battles
    covered about 60% of the participants' mean left rate."""
    rng = np.random.default_rng(3)
    covered = []
    for _ in range(300):
        habit = rng.beta(2, 2, 8)
        battles = [
            Battle("x", "y", "a" if rng.random() < h else "b", f"p{k}", f"i{k}-{t}")
            for k, h in enumerate(habit)
            for t in range(25)
        ]
        bias = position_bias(battles)
        assert bias is not None and bias.left_rate is not None
        low, high = bias.left_rate.ci_low, bias.left_rate.ci_high
        assert low is not None and high is not None
        covered.append(low <= 0.5 <= high)
    assert np.mean(covered) >= 0.93


def alpha_ratings(n_units: int, q: float, rng: np.random.Generator) -> Ratings:
    """Three raters per unit: the unit's true category (shares PI) with probability q, else
    a category drawn uniformly."""
    truth = rng.choice(5, n_units, p=PI)
    return {
        u: {f"r{r}": int(truth[u] if rng.random() < q else rng.integers(5)) for r in range(3)}
        for u in range(n_units)
    }


PI = np.array([0.1, 0.2, 0.4, 0.2, 0.1])


def population_alpha(q: float) -> float:
    """Nominal alpha of ``alpha_ratings`` in the limit of many units: 1 - D_o / D_e."""
    per_true = q * np.eye(5) + (1 - q) / 5  # row t: the rating's distribution given truth t
    observed = float(PI @ (1 - np.sum(per_true**2, axis=1)))
    marginal = PI @ per_true
    return 1 - observed / (1 - float(np.sum(marginal**2)))


def test_krippendorff_interval_covers_at_ten_units() -> None:
    """The percentile interval covered about 89% at ten units; BCa about 95%."""
    rng = np.random.default_rng(5)
    truth = population_alpha(0.6)
    covered = []
    for rep in range(300):
        alpha = krippendorff_alpha_ci(alpha_ratings(MIN_UNITS, 0.6, rng), n_boot=1000, seed=rep)
        if alpha is None or alpha.ci_low is None or alpha.ci_high is None:
            continue
        covered.append(alpha.ci_low <= truth <= alpha.ci_high)
    assert len(covered) >= 280 and np.mean(covered) >= 0.93


def test_krippendorff_interval_is_withheld_below_ten_units_and_resamples_clusters() -> None:
    """Two units resampled to near-point intervals; units of one item move together."""
    few = krippendorff_alpha_ci({0: {"a": 1, "b": 1}, 1: {"a": 2, "b": 1}}, n_boot=100)
    assert few is not None and few.too_few and few.ci_low is None and few.note
    ratings = alpha_ratings(40, 0.7, np.random.default_rng(1))
    items: dict[Hashable, Hashable] = {
        u: k // 4 for k, u in enumerate(ratings)
    }  # ten items of four units
    clustered = krippendorff_alpha_ci(ratings, n_boot=300, clusters=items)
    flat = krippendorff_alpha_ci(ratings, n_boot=300)
    assert clustered is not None and flat is not None and not clustered.too_few
    assert clustered.value == flat.value and clustered.n == flat.n == 40
    assert clustered.ci_low != flat.ci_low
