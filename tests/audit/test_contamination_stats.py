"""The contaminated-vs-clean test under a true null, by simulation."""

from __future__ import annotations

import numpy as np

from whetstone.audit.config import ContaminationConfig
from whetstone.audit.contamination import score_split


def test_five_contaminated_items_keep_the_size_under_a_true_null() -> None:
    """Bootstrapping each group alone rejected 19-20% of true nulls; the target is <= 5.5%."""
    rng = np.random.default_rng(3)
    cfg = ContaminationConfig()
    coverage = {f"i{k}": (1.0 if k < 5 else 0.0) for k in range(200)}
    rejected = []
    for rep in range(150):
        correct = rng.random(200) < 0.85
        values = {f"i{k}": float(c) for k, c in enumerate(correct)}
        split = score_split(coverage, values, cfg, run_id="r", task="t", metric="acc", seed=rep)
        assert split.p_value is not None and split.ci_low is not None
        rejected.append(split.p_value < 0.05)
    assert np.mean(rejected) <= 0.055 + 0.03
