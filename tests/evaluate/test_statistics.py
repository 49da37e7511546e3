"""Statistics checked against scipy, brute force and simulations with a known truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from tests.evaluate.references import bca_of
from whetstone.evaluate.statistics import (
    bca_interval,
    benjamini_hochberg,
    bootstrap_ci,
    clustered_wilson_ci,
    mcnemar_exact,
    mean_score,
    mover_interval,
    paired_bootstrap,
    paired_mean_test,
    paired_permutation_test,
    paired_proportion_test,
    paired_t_interval,
    ratio_bootstrap_ci,
    resample_indices,
    swap_permutation_test,
    tango_paired_ci,
    two_group_permutation_test,
    wilson_ci,
)

# ----------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (60, 200), (7, 13), (999, 1000)]
)
def test_wilson_matches_scipy(k: int, n: int) -> None:
    ref = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_ci(k, n)
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_wilson_other_confidence_matches_scipy() -> None:
    ref = sps.binomtest(30, 80).proportion_ci(confidence_level=0.9, method="wilson")
    assert wilson_ci(30, 80, confidence=0.9) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        wilson_ci(0, 0)
    with pytest.raises(ValueError):
        wilson_ci(5, 4)


def test_wilson_coverage_bernoulli() -> None:
    p, n = 0.3, 200
    successes = np.random.default_rng(123).binomial(n, p, size=2000)
    covered = [lo <= p <= hi for lo, hi in (wilson_ci(int(k), n) for k in successes)]
    assert 0.93 <= np.mean(covered) <= 0.97
    # exact coverage: probability mass of the outcomes whose interval covers p
    exact = sum(
        sps.binom.pmf(k, n, p)
        for k in range(n + 1)
        if wilson_ci(k, n)[0] <= p <= wilson_ci(k, n)[1]
    )
    assert 0.93 <= exact <= 0.97


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_mean_coverage_bernoulli() -> None:
    rng = np.random.default_rng(7)
    p, n, reps = 0.3, 200, 400
    covered = []
    for rep in range(reps):
        x = (rng.random(n) < p).astype(float)
        lo, hi = bootstrap_ci(x, n_boot=500, seed=rep)
        covered.append(lo <= p <= hi)
    assert 0.92 <= np.mean(covered) <= 0.98


def test_bootstrap_matches_textbook_bca_with_expanded_tails() -> None:
    """Same documented draws (one (n_boot, n) integer matrix from default_rng(seed)), via loops;
    the tail is Hesterberg's expansion: Phi(-sqrt(n / (n - 1)) * t(0.975, n - 1))."""
    x = np.random.default_rng(0).lognormal(size=30)
    draws = np.random.default_rng(11).integers(0, x.size, size=(400, x.size))
    expected = bca_of(list(x), lambda v: float(np.mean(v)), draws)  # type: ignore[arg-type]
    assert bootstrap_ci(x, np.mean, n_boot=400, seed=11) == pytest.approx(tuple(expected))


def test_bca_core_matches_scipy_bca() -> None:
    """Without the expansion the interval is scipy.stats.bootstrap's BCa (up to resampling)."""
    x = np.random.default_rng(4).gamma(0.7, size=40)
    n_boot = 40000
    dist = np.array(
        [x[row].mean() for row in np.random.default_rng(5).integers(0, 40, (n_boot, 40))]
    )
    jack = (x.sum() - x) / 39
    got = bca_interval(x.mean(), dist, jack, 40, expand=False)
    ref = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=n_boot, random_state=6)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert float(got[0]) == pytest.approx(ref.confidence_interval.low, abs=0.03 * width)
    assert float(got[1]) == pytest.approx(ref.confidence_interval.high, abs=0.03 * width)


def test_bootstrap_mean_coverage_at_ten_skewed_items() -> None:
    """Percentile intervals of ten lognormal items cover about 85%; BCa with expansion >= 90%."""
    rng = np.random.default_rng(12)
    truth = np.exp(0.5)
    covered = [
        (lambda lo_hi: lo_hi[0] <= truth <= lo_hi[1])(
            bootstrap_ci(rng.lognormal(size=10), n_boot=500, seed=rep)
        )
        for rep in range(300)
    ]
    assert np.mean(covered) >= 0.88


def test_bootstrap_statistic_without_axis_falls_back_to_rows() -> None:
    x = np.random.default_rng(1).normal(size=40)

    def trimmed(v: np.ndarray) -> float:
        return float(sps.trim_mean(v, 0.1))

    def trimmed_axis(v: np.ndarray, axis: int) -> np.ndarray:
        return np.asarray(sps.trim_mean(v, 0.1, axis=axis))

    a = bootstrap_ci(x, trimmed, n_boot=200, seed=3)
    b = bootstrap_ci(x, trimmed_axis, n_boot=200, seed=3)
    assert a == pytest.approx(b)


def test_bootstrap_deterministic_and_seed_dependent() -> None:
    x = np.random.default_rng(2).normal(size=300)
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5) != bootstrap_ci(x, seed=6)


def test_resample_indices_chunks_cover_n_boot_rows() -> None:
    chunks = list(resample_indices(1000, n_boot=1001, seed=0, chunk_elements=100_000))
    assert len(chunks) > 1
    assert sum(c.shape[0] for c in chunks) == 1001
    assert all(c.shape[1] == 1000 and c.min() >= 0 and c.max() < 1000 for c in chunks)


def test_bootstrap_large_n_is_fast() -> None:
    import time

    x = np.random.default_rng(3).normal(size=10_000)
    start = time.perf_counter()
    lo, hi = bootstrap_ci(x, n_boot=1000)
    assert time.perf_counter() - start < 3.0
    assert lo < x.mean() < hi


def test_bootstrap_empty_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])


def test_clustered_bootstrap_with_singleton_clusters_equals_item_bootstrap() -> None:
    x = np.random.default_rng(4).normal(size=120)
    singletons = np.arange(120)
    for stat in (np.mean, np.median):
        assert bootstrap_ci(x, stat, seed=2, clusters=singletons) == pytest.approx(
            bootstrap_ci(x, stat, seed=2)
        )


def test_clustered_bootstrap_covers_with_cluster_effects_where_naive_fails() -> None:
    rng = np.random.default_rng(5)
    n_clusters, size, reps = 40, 10, 200
    clusters = np.repeat(np.arange(n_clusters), size)
    clustered, naive = [], []
    for rep in range(reps):
        x = np.repeat(rng.normal(size=n_clusters), size) + rng.normal(size=n_clusters * size)
        lo, hi = bootstrap_ci(x, n_boot=400, seed=rep, clusters=clusters)
        clustered.append(lo <= 0.0 <= hi)
        lo, hi = bootstrap_ci(x, n_boot=400, seed=rep)
        naive.append(lo <= 0.0 <= hi)
    assert 0.88 <= np.mean(clustered) <= 0.99
    assert np.mean(naive) < 0.75


def test_clustered_bootstrap_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="clusters"):
        bootstrap_ci([1.0, 2.0, 3.0], clusters=[0, 1])


# ----------------------------------------------------------------------------- ratio bootstrap


def test_ratio_bootstrap_matches_studentized_loop_reference() -> None:
    """bootstrap-t: each resample's ratio over its delta-method SE, written out with loops."""
    rng = np.random.default_rng(8)
    tokens = rng.integers(5, 50, size=30).astype(float)
    logprob = -tokens * rng.uniform(1.0, 3.0, size=30)
    draws = np.random.default_rng(9).integers(0, 30, size=(250, 30))

    def ratio_and_se(rows: list[int]) -> tuple[float, float]:
        x, y = logprob[rows], tokens[rows]
        r = x.sum() / y.sum()
        resid = (x - r * y) / y.mean()
        return r, float(np.sqrt((resid**2).sum() / (len(rows) * (len(rows) - 1))))

    r0, se0 = ratio_and_se(list(range(30)))
    t = [(r - r0) / se for r, se in (ratio_and_se(list(row)) for row in draws)]
    t_hi, t_lo = np.quantile(t, [0.975, 0.025])
    expected = sorted(np.exp(-np.array([r0 - t_hi * se0, r0 - t_lo * se0])))
    got = ratio_bootstrap_ci(logprob, tokens, lambda r: np.exp(-r), n_boot=250, seed=9)
    assert got == pytest.approx(tuple(expected))


def test_ratio_bootstrap_coverage_at_ten_heterogeneous_documents() -> None:
    rng = np.random.default_rng(13)
    covered = []
    for rep in range(300):
        size = np.maximum(50, rng.lognormal(np.log(4000), 0.8, 10))
        nll = size * 1.1 * rng.gamma(4, 0.25, 10)
        lo, hi = ratio_bootstrap_ci(-nll, size, lambda r: -r, n_boot=500, seed=rep)
        covered.append(lo <= 1.1 <= hi)
    assert np.mean(covered) >= 0.9


def test_ratio_bootstrap_coverage() -> None:
    rng = np.random.default_rng(10)
    truth, covered = 2.0, []
    for rep in range(200):
        tokens = rng.integers(20, 200, size=60).astype(float)
        nll = rng.normal(truth * tokens, 3.0 * np.sqrt(tokens))
        lo, hi = ratio_bootstrap_ci(-nll, tokens, lambda r: -r, n_boot=400, seed=rep)
        covered.append(lo <= truth <= hi)
    assert 0.9 <= np.mean(covered) <= 0.99


# ----------------------------------------------------------------------------- McNemar


def _mcnemar_reference(b: int, c: int) -> float:
    """Two-sided exact binomial p-value from the pmf: sum of outcomes no likelier than b."""
    m = b + c
    pmf = sps.binom.pmf(np.arange(m + 1), m, 0.5)
    return float(min(1.0, pmf[pmf <= pmf[b] * (1 + 1e-7)].sum()))


@pytest.mark.parametrize(("b", "c"), [(5, 1), (1, 5), (10, 10), (0, 7), (30, 12), (1, 0)])
def test_mcnemar_matches_binomial_pmf(b: int, c: int) -> None:
    both = 17
    neither = 9
    a_correct = [1] * b + [0] * c + [1] * both + [0] * neither
    b_correct = [0] * b + [1] * c + [1] * both + [0] * neither
    result = mcnemar_exact(a_correct, b_correct)
    assert (result.b, result.c) == (b, c)
    assert result.p_value == pytest.approx(_mcnemar_reference(b, c), rel=1e-9)
    assert result.p_value == pytest.approx(min(1.0, 2 * sps.binom.cdf(min(b, c), b + c, 0.5)))


def test_mcnemar_no_discordant_pairs() -> None:
    result = mcnemar_exact([1, 0, 1], [1, 0, 1])
    assert (result.b, result.c, result.p_value) == (0, 0, 1.0)


# ----------------------------------------------------------------------------- paired tests


def test_paired_bootstrap_coverage_of_known_difference() -> None:
    rng = np.random.default_rng(12)
    delta, covered = 0.2, []
    for rep in range(300):
        skill = rng.normal(size=150)
        a = skill + rng.normal(scale=0.5, size=150)
        b = skill + delta + rng.normal(scale=0.5, size=150)
        result = paired_bootstrap(a, b, n_boot=400, seed=rep)
        assert result.diff == pytest.approx(b.mean() - a.mean())
        covered.append(result.ci_low <= delta <= result.ci_high)
    assert 0.91 <= np.mean(covered) <= 0.98


def test_paired_tests_reject_about_five_percent_under_null() -> None:
    rng = np.random.default_rng(13)
    boot_rejections, perm_rejections = [], []
    for rep in range(300):
        skill = rng.normal(size=100)
        a = skill + rng.normal(size=100)
        b = skill + rng.normal(size=100)
        boot_rejections.append(paired_bootstrap(a, b, n_boot=400, seed=rep).p_value < 0.05)
        perm_rejections.append(paired_permutation_test(a, b, n_perm=400, seed=rep).p_value < 0.05)
    assert 0.02 <= np.mean(boot_rejections) <= 0.09
    assert 0.02 <= np.mean(perm_rejections) <= 0.09


def test_paired_tests_detect_a_real_difference() -> None:
    rng = np.random.default_rng(14)
    a = rng.normal(size=200)
    b = a + 0.5 + rng.normal(scale=0.3, size=200)
    assert paired_bootstrap(a, b, n_boot=1000).p_value < 0.01
    assert paired_permutation_test(a, b, n_perm=2000).p_value < 0.01


def test_paired_bootstrap_identical_inputs() -> None:
    x = np.random.default_rng(15).normal(size=50)
    result = paired_bootstrap(x, x)
    assert (result.diff, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap([1.0, 2.0], [1.0])


def test_permutation_exact_matches_brute_force_and_scipy() -> None:
    rng = np.random.default_rng(16)
    a = rng.normal(size=10)
    b = a + rng.normal(0.4, 1.0, size=10)
    d = b - a
    observed = d.mean()
    flips = [np.mean(np.array(s) * d) for s in itertools.product([-1, 1], repeat=d.size)]
    brute = np.mean(np.abs(flips) >= abs(observed) - 1e-12)
    ref = sps.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    result = paired_permutation_test(a, b)
    assert result.diff == pytest.approx(observed)
    assert result.p_value == pytest.approx(brute)
    assert result.p_value == pytest.approx(ref.pvalue)


def test_permutation_monte_carlo_close_to_scipy() -> None:
    rng = np.random.default_rng(17)
    a = rng.normal(size=60)
    b = a + rng.normal(0.25, 1.0, size=60)
    ref = sps.permutation_test(
        (b - a,),
        np.mean,
        permutation_type="samples",
        n_resamples=20000,
        alternative="two-sided",
        rng=np.random.default_rng(1),
    )
    got = paired_permutation_test(a, b, n_perm=20000, seed=0).p_value
    assert 0.0 < ref.pvalue < 0.5
    assert got == pytest.approx(ref.pvalue, abs=0.01)


# ----------------------------------------------------------------------------- BH


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(18)
    p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 0.01, size=10), [0.02, 0.02, 1.0]])
    rng.shuffle(p)
    expected = sps.false_discovery_control(p, method="bh")
    np.testing.assert_allclose(benjamini_hochberg(p), expected, rtol=1e-12)


def test_benjamini_hochberg_keeps_shape_and_rejects_bad_values() -> None:
    p = np.array([[0.01, 0.04], [0.03, 0.5]])
    expected = sps.false_discovery_control(p.ravel(), method="bh").reshape(2, 2)
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1, 1.5])
    with pytest.raises(ValueError):
        benjamini_hochberg([0.1, float("nan")])


# ------------------------------------------------------------------------- paired and group tests


def test_swap_permutation_of_a_mean_equals_scipy_paired_permutation_test() -> None:
    rng = np.random.default_rng(40)
    a, b = rng.normal(size=12), rng.normal(0.4, 1.0, size=12)
    ones = np.ones(12)
    got = swap_permutation_test(
        np.stack([a, ones], axis=1), np.stack([b, ones], axis=1), mean_score
    )
    ref = sps.permutation_test(
        (b, a), lambda x, y: np.mean(x - y), permutation_type="samples", n_resamples=np.inf
    )
    assert got == pytest.approx(ref.pvalue)


def test_paired_mean_test_size_at_ten_items_with_ties() -> None:
    rng = np.random.default_rng(41)
    rejected = []
    for rep in range(500):
        item = rng.beta(0.5, 0.5, 10)
        x = np.clip(item + rng.normal(0, 0.2, 10), 0, 1)
        y = np.clip(item + rng.normal(0, 0.2, 10), 0, 1)
        rejected.append(paired_mean_test(x, y, n_boot=200, seed=rep).p_value < 0.05)
    assert np.mean(rejected) <= 0.055 + 0.02


def test_two_group_permutation_test_matches_scipy_and_keeps_its_size() -> None:
    rng = np.random.default_rng(42)
    x, y = rng.normal(size=40), rng.normal(0.8, 1.0, size=6)
    got = two_group_permutation_test(x, y, n_perm=20000, seed=1)
    ref = sps.permutation_test(
        (y, x), lambda u, v: np.mean(u) - np.mean(v), n_resamples=20000, random_state=2
    ).pvalue
    assert got == pytest.approx(ref, abs=0.01)
    rejected = []
    for rep in range(400):  # five items of a group that is often all correct
        scores = (rng.random(200) < 0.85).astype(float)
        rejected.append(
            two_group_permutation_test(scores[:195], scores[195:], n_perm=500, seed=rep) < 0.05
        )
    assert np.mean(rejected) <= 0.055 + 0.02


def test_tango_interval_covers_the_paired_difference() -> None:
    rng = np.random.default_rng(43)
    cells = np.array([0.6, 0.08, 0.14, 0.18])  # both, only A, only B, neither
    truth = cells[2] - cells[1]
    covered = []
    for _ in range(1000):
        kind = rng.choice(4, size=60, p=cells)
        a, b = np.isin(kind, (0, 1)), np.isin(kind, (0, 2))
        lo, hi = tango_paired_ci(a, b)
        covered.append(lo <= truth <= hi)
    assert 0.93 <= np.mean(covered) <= 0.98


def _tango_reference(only_a: int, only_b: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Tango's interval from its definition, not its closed form: for each difference d, the
    multinomial likelihood maximized numerically under p(only B) - p(only A) = d, the score
    statistic from those cell probabilities, and the d where it crosses +-z."""
    from scipy.optimize import brentq, minimize_scalar

    others = n - only_a - only_b

    def restricted(d: float) -> float:  # p(only A) at the constrained maximum
        lo, hi = max(0.0, -d) + 1e-12, (1.0 - d) / 2 - 1e-12

        def nll(pa: float) -> float:
            pb, rest = pa + d, 1.0 - 2 * pa - d
            return -(only_a * np.log(pa) + only_b * np.log(pb) + others * np.log(max(rest, 1e-300)))

        return minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x

    def score(d: float) -> float:
        pa = restricted(d)
        return (only_b - only_a - n * d) / np.sqrt(n * (2 * pa + d - d * d))

    obs = (only_b - only_a) / n
    return (
        brentq(lambda d: score(d) - z, -0.999, obs, xtol=1e-10),
        brentq(lambda d: score(d) + z, obs, 0.999, xtol=1e-10),
    )


@pytest.mark.parametrize(("only_a", "only_b", "n"), [(1, 7, 21), (8, 14, 60), (30, 12, 300)])
def test_tango_interval_equals_its_definition(only_a: int, only_b: int, n: int) -> None:
    a = np.array([True] * only_a + [False] * only_b + [True] * (n - only_a - only_b))
    b = np.array([False] * only_a + [True] * only_b + [True] * (n - only_a - only_b))
    low, high = tango_paired_ci(a, b)
    ref_low, ref_high = _tango_reference(only_a, only_b, n)
    assert low == pytest.approx(ref_low, abs=1e-5) and high == pytest.approx(ref_high, abs=1e-5)


def test_tango_interval_keeps_each_tail_where_a_margin_verdict_needs_it() -> None:
    """A gate passes when the worse end is within the margin: each end of the 95% interval may
    miss on its side at most about 2.5% of the time (Newcombe's missed 3.3-4.3% below)."""
    rng = np.random.default_rng(46)
    cells = np.array([0.5, 0.17, 0.07, 0.26])  # both, only A, only B, neither: B worse by 0.1
    truth, trials = cells[2] - cells[1], 2000
    for n in (30, 100):
        below = above = 0
        for _ in range(trials):
            kind = rng.choice(4, size=n, p=cells)
            low, high = tango_paired_ci(np.isin(kind, (0, 1)), np.isin(kind, (0, 2)))
            below, above = below + (truth < low), above + (truth > high)
        limit = sps.binom.ppf(0.99, trials, 0.025) / trials
        assert below / trials <= limit and above / trials <= limit, (n, below, above)


def test_paired_proportion_interval_never_contradicts_a_non_rejection() -> None:
    rng = np.random.default_rng(44)
    for _ in range(300):
        a = rng.random(25) < 0.7
        b = np.where(rng.random(25) < 0.2, ~a, a)
        result, test = paired_proportion_test(a, b)
        if test.p_value >= 0.05:
            assert result.ci_low <= 0.0 <= result.ci_high


def test_clustered_wilson_covers_where_judgments_of_an_item_correlate() -> None:
    """Three judges per item share the item's tendency: Wilson over judgments covers ~80%."""
    rng = np.random.default_rng(45)
    clustered, naive = [], []
    for _ in range(400):
        item_p = rng.beta(0.6, 1.4, 40)  # truth: the mean share 0.3
        hits = rng.binomial(3, item_p)
        lo, hi = clustered_wilson_ci(hits, np.full(40, 3))
        clustered.append(lo <= 0.3 <= hi)
        lo, hi = wilson_ci(int(hits.sum()), 120)
        naive.append(lo <= 0.3 <= hi)
    assert np.mean(clustered) >= 0.93
    assert np.mean(naive) < np.mean(clustered) - 0.05


def test_mover_with_independent_parts_reduces_to_the_sum_of_squared_margins() -> None:
    low, high = mover_interval([0.5, 0.8], [0.3, 0.7], [0.6, 0.95], [0.5, 0.5])
    assert low == pytest.approx(0.65 - 0.5 * np.hypot(0.2, 0.1))
    assert high == pytest.approx(0.65 + 0.5 * np.hypot(0.1, 0.15))


def test_paired_t_interval_equals_scipy() -> None:
    rng = np.random.default_rng(47)
    a, b = rng.random(12), rng.random(12)
    ref = sps.ttest_rel(b, a).confidence_interval(0.9)
    assert paired_t_interval(a, b, 0.9) == pytest.approx((ref.low, ref.high))


def test_a_few_items_widen_the_mean_difference_to_hold_the_t_interval() -> None:
    from whetstone.evaluate.compare import T_UNION_BELOW, compare_samples
    from whetstone.records import SampleRecord

    rng = np.random.default_rng(48)
    for n in (6, T_UNION_BELOW + 10):
        a, b = rng.beta(2, 5, n), rng.beta(2, 4, n)
        runs = [
            [
                SampleRecord(task="t", id=str(i), prompt="", metrics={"f": float(v)})
                for i, v in enumerate(values)
            ]
            for values in (a, b)
        ]
        m = compare_samples(*runs).metrics[0]
        low, high = paired_t_interval(a, b)
        if n < T_UNION_BELOW:
            assert m.ci_low <= low and m.ci_high >= high
        else:
            assert m.ci_low > low or m.ci_high < high  # the BCa interval alone
