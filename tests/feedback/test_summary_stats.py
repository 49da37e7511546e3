"""Feedback statistics by simulation: shares clustered by item, too-few flags."""

from __future__ import annotations

import numpy as np

from whetstone.feedback.summary import _mean_ci, _share


def test_likert_share_covers_when_three_judges_rate_each_item() -> None:
    """Judges of one item agree more than chance: Wilson over judgments covered about 80%."""
    rng = np.random.default_rng(7)
    covered = []
    for _ in range(300):
        item_p = rng.beta(0.8, 1.6, 30)  # each item's chance of a "5"; mean 1/3
        hits = [bool(h) for p in item_p for h in rng.random(3) < p]
        items = [str(i) for i in range(30) for _ in range(3)]
        share = _share(hits, items)
        assert share is not None and share.ci_low is not None and share.ci_high is not None
        covered.append(share.ci_low <= 1 / 3 <= share.ci_high)
    assert np.mean(covered) >= 0.92


def test_one_item_is_flagged_not_a_point_interval() -> None:
    """One item rated 3 by three judges gave the interval (3.0, 3.0)."""
    mean = _mean_ci([3.0, 3.0, 3.0], ["q1"] * 3, n_boot=100)
    assert mean is not None and mean.too_few and mean.ci_low is None and mean.note
