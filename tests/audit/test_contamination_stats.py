"""The contaminated-vs-clean comparison by simulation with known truth: the test's size under a
true null, the difference's coverage, and the too-few flags."""

from __future__ import annotations

import numpy as np

from whetstone.audit.config import ContaminationConfig
from whetstone.audit.contamination import (
    MIN_BOOTSTRAP_ITEMS,
    MIN_GROUP,
    _difference_interval,
    score_split,
)

CFG = ContaminationConfig()


def split_of(dirty: np.ndarray, clean: np.ndarray, seed: int = 0):  # type: ignore[no-untyped-def]
    """score_split on contaminated items d0, d1, ... and clean items c0, c1, ..."""
    coverage = {f"d{k}": 1.0 for k in range(dirty.size)} | {f"c{k}": 0.0 for k in range(clean.size)}
    values = {f"d{k}": float(v) for k, v in enumerate(dirty)}
    values |= {f"c{k}": float(v) for k, v in enumerate(clean)}
    return score_split(coverage, values, CFG, run_id="r", task="t", metric="m", seed=seed)


def test_five_contaminated_items_keep_the_size_under_a_true_null() -> None:
    """Bootstrapping each group alone rejected 19-20% of true nulls; the target is <= 5.5%."""
    rng = np.random.default_rng(3)
    rejected = []
    for rep in range(150):
        split = split_of(rng.random(5) < 0.85, rng.random(195) < 0.85, seed=rep)
        assert split.p_value is not None and split.ci_low is not None
        rejected.append(split.p_value < 0.05)
    assert np.mean(rejected) <= 0.055 + 0.03


def test_difference_interval_covers_with_five_contaminated_items() -> None:
    """Newcombe's interval (MOVER over Wilson) of contaminated - clean covers at MIN_GROUP
    items; each group's percentile bootstrap, differenced, covered 63% here."""
    rng = np.random.default_rng(8)
    covered = []
    for rep in range(1000):
        dirty, clean = rng.random(MIN_GROUP) < 0.95, rng.random(200) < 0.85
        low, high = _difference_interval(clean.astype(float), dirty.astype(float), rep)
        covered.append(low <= 0.10 <= high)
    assert np.mean(covered) >= 0.93
    split = split_of(dirty, clean)
    assert (split.ci_low, split.ci_high) == (low, high) and not split.too_few


def test_three_contaminated_items_are_flagged_not_a_point_interval() -> None:
    """Three all-correct items: each group bootstrapped alone gave the group (1.0, 1.0)."""
    split = split_of(np.ones(3), np.random.default_rng(0).random(100) < 0.7)
    assert split.too_few and split.ci_low is None and split.ci_high is None and split.note
    assert split.p_value is not None and split.diff is not None
    group = split.contaminated
    assert group.method == "wilson" and group.ci_low is not None and group.ci_high == 1.0
    assert group.ci_low < 0.5  # Wilson on 3/3: [0.44, 1], an honest width


def test_scores_that_are_not_binary_need_ten_items_a_group() -> None:
    """Token F1-like scores: a BCa interval needs MIN_BOOTSTRAP_ITEMS items with spread."""
    rng = np.random.default_rng(2)
    few = split_of(rng.beta(2, 2, MIN_BOOTSTRAP_ITEMS - 1), rng.beta(2, 2, 80))
    assert few.contaminated.too_few and few.contaminated.ci_low is None
    assert few.too_few and few.ci_low is None and few.p_value is not None
    flat = split_of(np.full(12, 0.5), rng.beta(2, 2, 80))
    assert flat.contaminated.too_few and "spread" in str(flat.contaminated.note)
    enough = split_of(rng.beta(2, 2, 12), rng.beta(2, 2, 80))
    assert enough.contaminated.method == "bca" and enough.ci_low is not None
