"""Error analysis when items have several observations (runs, judges), by simulation with known
truth: the slice test's size, the coverage of shares; and the too-few flags."""

from __future__ import annotations

import numpy as np
import pytest

from whetstone.diagnose.categories import share, share_over
from whetstone.diagnose.schema import Observation
from whetstone.diagnose.slices import (
    AttributeTable,
    Condition,
    design_effect,
    find_slices,
    fisher_greater,
    rao_scott_fisher,
)


def judged(
    n_items: int, judges: int, rng: np.random.Generator
) -> tuple[list[Observation], np.ndarray]:
    """``judges`` judgments of each item; an item's own failure chance is Beta(0.3, 0.7), so
    judges of one item agree more than chance. Returns the observations and item codes."""
    chance = rng.beta(0.3, 0.7, n_items)
    codes = np.repeat(np.arange(n_items), judges)
    failed = rng.random(codes.size) < chance[codes]
    obs = [
        Observation(
            uid=f"c:{item}:{k}",
            source="feedback",
            origin="c",
            task="feedback:c",
            kind="review",
            item_id=f"q{item}",
            failed=bool(f),
        )
        for k, (item, f) in enumerate(zip(codes, failed, strict=True))
    ]
    return obs, codes


def test_slice_test_keeps_its_size_when_judges_share_items() -> None:
    """A slice of 8 of 40 items, each judged by 5 people, unrelated to failure: Fisher's test
    on the judgments rejected 17% at 0.05 (the judgments are not independent)."""
    rng = np.random.default_rng(0)
    rejected = []
    for _ in range(600):
        obs, codes = judged(40, 5, rng)
        inside = np.isin(codes, rng.choice(40, 8, replace=False))
        table = AttributeTable([Condition("column", "x")], inside[:, None])
        _results, search = find_slices(
            table, [o.failed for o in obs], obs, min_size=10, pairs=False
        )
        rejected.append(search.significant > 0)
    assert np.mean(rejected) <= 0.055


def test_independent_observations_keep_fishers_exact_test() -> None:
    """One observation per item: the design effect is not used and p is Fisher's."""
    rng = np.random.default_rng(1)
    obs, _codes = judged(200, 1, rng)
    failed = np.array([o.failed for o in obs])
    inside = rng.random(200) < 0.3
    table = AttributeTable([Condition("column", "x")], inside[:, None])
    results, search = find_slices(table, failed, obs, min_size=10, pairs=False, fdr=1.0)
    assert not search.clustered
    k, n = int(failed[inside].sum()), int(inside.sum())
    if results:
        assert results[0].design_effect == 1.0
        expected = float(fisher_greater(k, n, int(failed.sum()), 200))
        assert results[0].p_value == pytest.approx(expected)


def test_rao_scott_divides_the_counts_by_the_design_effect() -> None:
    """deff 1 is Fisher's test; deff 2 is Fisher's test on half the counts."""
    assert rao_scott_fisher(12, 30, 40, 100, 1.0) == pytest.approx(
        float(fisher_greater(12, 30, 40, 100))
    )
    assert rao_scott_fisher(12, 30, 40, 100, 2.0) == pytest.approx(
        float(fisher_greater(6, 15, 20, 50))
    )
    member = np.array([True] * 6 + [False] * 6)
    same = np.array([1, 1, 1, 0, 0, 0] * 2, dtype=float)
    assert design_effect(member, same, np.arange(12)) >= 1.0
    assert design_effect(member, same, np.repeat(np.arange(4), 3)) > 2.0  # items are blocks


def test_failure_rate_over_judgments_covers_with_items_as_the_unit() -> None:
    """Wilson over judgments (five per item) covered about 75%; clustered by item, >= 93%."""
    rng = np.random.default_rng(2)
    covered = []
    for _ in range(1000):
        obs, codes = judged(30, 5, rng)
        rate = share_over([o.failed for o in obs], list(codes))
        assert rate.method == "clustered_wilson" and not rate.too_few
        covered.append(rate.ci_low <= 0.3 <= rate.ci_high)
    assert np.mean(covered) >= 0.93


def test_empty_and_one_item_shares_are_flagged_not_point_intervals() -> None:
    """A share of nothing was 0 with [0, 0]; one item judged five times has no spread."""
    empty = share(0, 0)
    assert empty.too_few and (empty.ci_low, empty.ci_high) == (0.0, 1.0) and empty.note
    one = share_over([True, False, True, True, True], ["q1"] * 5)
    assert one.too_few and one.ci_low < one.value < one.ci_high and one.note
    plain = share_over([True, False, True], ["a", "b", "c"])
    assert plain.method == "wilson" and not plain.too_few
