"""Paired comparison of two runs (`compare_samples`) against direct computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from whetstone.errors import WhetstoneError
from whetstone.evaluate.compare import Comparison, MetricComparison, compare_samples
from whetstone.records import SampleRecord


def _samples(task: str, ids: list[str], **columns: list[float]) -> list[SampleRecord]:
    return [
        SampleRecord(
            task=task,
            id=item_id,
            prompt=f"prompt {item_id}",
            metrics={name: float(values[i]) for name, values in columns.items()},
        )
        for i, item_id in enumerate(ids)
    ]


def _row(cmp: Comparison, task: str, metric: str) -> MetricComparison:
    (row,) = [m for m in cmp.metrics if m.task == task and m.metric == metric]
    return row


def test_mcnemar_p_value_equals_scipy_binomtest_on_the_discordant_pairs() -> None:
    rng = np.random.default_rng(3)
    n = 80
    a = (rng.random(n) < 0.55).astype(float)
    b = a.copy()
    flips = rng.choice(n, size=23, replace=False)
    b[flips] = 1 - b[flips]  # 23 discordant items, split unevenly between the two directions
    ids = [f"q{i}" for i in range(n)]
    cmp = compare_samples(_samples("mc", ids, acc=list(a)), _samples("mc", ids, acc=list(b)))

    row = _row(cmp, "mc", "acc")
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    assert only_a + only_b == 23 and only_a != only_b
    expected = stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
    assert row.test == "mcnemar_exact"
    assert row.p_value == pytest.approx(expected, rel=1e-12)
    assert row.a == pytest.approx(a.mean()) and row.b == pytest.approx(b.mean())
    assert row.diff == pytest.approx(b.mean() - a.mean(), abs=1e-12)  # B minus A
    assert row.diff == pytest.approx((only_b - only_a) / n, abs=1e-12)
    assert row.ci_low <= row.diff <= row.ci_high
    assert row.n == n
    assert cmp.unpaired == {}


def test_identical_runs_have_p_one_and_zero_difference() -> None:
    ids = [f"q{i}" for i in range(30)]
    values = [float(i % 3 == 0) for i in range(30)]
    scores = [0.1 * i for i in range(30)]
    cmp = compare_samples(
        _samples("t", ids, acc=values, score=scores), _samples("t", ids, acc=values, score=scores)
    )
    for metric in ("acc", "score"):
        row = _row(cmp, "t", metric)
        assert row.diff == 0.0 and row.p_value == 1.0
        assert row.ci_low == 0.0 and row.ci_high == 0.0


def test_difference_of_means_is_the_direct_difference_for_continuous_metrics() -> None:
    rng = np.random.default_rng(0)
    n = 50
    a = rng.normal(0.40, 0.1, n)
    b = a + rng.normal(0.15, 0.05, n)  # B clearly better, item by item
    ids = [str(i) for i in range(n)]
    cmp = compare_samples(
        _samples("gen", ids, token_f1=list(a)), _samples("gen", ids, token_f1=list(b))
    )

    row = _row(cmp, "gen", "token_f1")
    assert row.test == "paired_bootstrap"
    assert row.diff == pytest.approx(b.mean() - a.mean(), rel=1e-12)
    assert row.a == pytest.approx(a.mean(), rel=1e-12)
    assert row.b == pytest.approx(b.mean(), rel=1e-12)
    assert row.ci_low <= row.diff <= row.ci_high
    assert row.ci_low > 0  # every paired difference is positive on average by 3 sd
    # the interval is close to the normal-theory paired interval
    se = float(np.std(b - a, ddof=1)) / math.sqrt(n)
    assert row.ci_low == pytest.approx(row.diff - 1.96 * se, abs=0.5 * se)
    assert row.ci_high == pytest.approx(row.diff + 1.96 * se, abs=0.5 * se)
    assert row.p_value < 0.01


def test_items_in_only_one_run_are_reported_unpaired_and_left_out() -> None:
    a = _samples("mc", ["q1", "q2", "q3", "only-a"], acc=[1, 0, 1, 1], score=[0.5, 0.2, 0.9, 100.0])
    b = _samples(
        "mc", ["q1", "q2", "q3", "only-b"], acc=[1, 1, 1, 0], score=[0.4, 0.3, 0.8, -100.0]
    )
    cmp = compare_samples(a, b, run_a="A1", run_b="B1")

    assert cmp.run_a == "A1" and cmp.run_b == "B1"
    assert cmp.unpaired == {"mc": 2}
    acc = _row(cmp, "mc", "acc")
    assert acc.n == 3
    assert acc.a == pytest.approx(2 / 3) and acc.b == pytest.approx(1.0)
    score = _row(cmp, "mc", "score")
    assert score.diff == pytest.approx(np.mean([0.4, 0.3, 0.8]) - np.mean([0.5, 0.2, 0.9]))


def test_a_task_in_only_one_run_counts_all_its_items_as_unpaired() -> None:
    a = _samples("t1", ["1", "2"], acc=[1, 0]) + _samples("t2", ["1", "2", "3"], acc=[1, 1, 0])
    b = _samples("t1", ["1", "2"], acc=[0, 0])
    cmp = compare_samples(a, b)
    assert cmp.unpaired == {"t2": 3}
    assert {m.task for m in cmp.metrics} == {"t1"}


def test_runs_without_shared_items_are_refused() -> None:
    with pytest.raises(WhetstoneError, match="share no"):
        compare_samples(_samples("t", ["1"], acc=[1]), _samples("t", ["2"], acc=[1]))


def test_perplexity_difference_is_the_direct_corpus_formula() -> None:
    rng = np.random.default_rng(1)
    n = 12
    n_tokens = rng.integers(50, 400, n).astype(float)
    n_bytes = n_tokens * rng.uniform(3.0, 5.0, n).round()
    lp_a = -n_tokens * rng.uniform(2.0, 3.0, n)
    lp_b = lp_a + n_tokens * rng.uniform(0.0, 0.3, n)  # B is better on every document
    ids = [f"doc{i}" for i in range(n)]
    extra = {"n_words": list(n_tokens / 2)}
    a = _samples(
        "ppl", ids, logprob=list(lp_a), n_tokens=list(n_tokens), n_bytes=list(n_bytes), **extra
    )
    b = _samples(
        "ppl", ids, logprob=list(lp_b), n_tokens=list(n_tokens), n_bytes=list(n_bytes), **extra
    )
    # one document only in A: it must not enter A's corpus value
    a += _samples("ppl", ["lonely"], logprob=[-1e6], n_tokens=[10.0], n_bytes=[40.0], n_words=[5.0])
    cmp = compare_samples(a, b)

    ppl = _row(cmp, "ppl", "perplexity")
    ppl_a = math.exp(-lp_a.sum() / n_tokens.sum())
    ppl_b = math.exp(-lp_b.sum() / n_tokens.sum())
    assert ppl.a == pytest.approx(ppl_a, rel=1e-12)
    assert ppl.b == pytest.approx(ppl_b, rel=1e-12)
    assert ppl.diff == pytest.approx(ppl_b - ppl_a, rel=1e-12)
    assert ppl.diff < 0
    assert ppl.ci_low <= ppl.diff <= ppl.ci_high
    assert ppl.n == n
    bpb = _row(cmp, "ppl", "bits_per_byte")
    bpb_a = -lp_a.sum() / n_bytes.sum() / math.log(2)
    bpb_b = -lp_b.sum() / n_bytes.sum() / math.log(2)
    assert bpb.diff == pytest.approx(bpb_b - bpb_a, rel=1e-12)
    assert cmp.unpaired == {"ppl": 1}
    # the corpus metrics replace the per-item columns: no mean of per-document log-probs
    assert {m.metric for m in cmp.metrics if m.task == "ppl"} == {"perplexity", "bits_per_byte"}
