"""Paired comparison of two runs (`compare_samples`) against direct computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu
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
        assert row.ci_low <= 0.0 <= row.ci_high
    # no discordant pair in 30 does not prove the discordance is 0: Tango's interval is not
    # a point (statsmodels' Wilson upper bound for 0 of 30 is 0.114; the paired one is narrower)
    acc = _row(cmp, "t", "acc")
    assert 0.03 < acc.ci_high < 0.114 and acc.ci_low == pytest.approx(-acc.ci_high)


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
    assert row.test == "sign_flip"
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
    ratios = {"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte"}
    assert {m.metric for m in cmp.metrics if m.task == "ppl"} == ratios


def test_an_id_twice_in_one_run_is_refused_naming_it() -> None:
    a = _samples("t", ["q1", "q2", "q2"], acc=[1, 0, 1])
    b = _samples("t", ["q1", "q2"], acc=[1, 1])
    with pytest.raises(WhetstoneError, match=r"run A: task 't' has item id 'q2' twice"):
        compare_samples(a, b)


def test_a_metric_missing_on_the_first_item_is_still_compared_and_missing_counted() -> None:
    ids = [f"q{i}" for i in range(12)]
    a, b = _samples("g", ids, acc=[1] * 12), _samples("g", ids, acc=[0] * 12)
    for i, (x, y) in enumerate(zip(a[1:], b[1:], strict=True)):
        x.metrics["token_f1"], y.metrics["token_f1"] = 0.5, 0.5 + 0.01 * i
    cmp = compare_samples(a, b)
    row = _row(cmp, "g", "token_f1")
    assert row.n == 11 and row.missing == 1


def test_a_nan_log_likelihood_drops_the_document_and_counts_it() -> None:
    ids = [f"d{i}" for i in range(8)]
    tokens, lp = [100.0] * 8, [-250.0 - i for i in range(8)]
    a = _samples("p", ids, logprob=lp, n_tokens=tokens, n_bytes=[400.0] * 8, n_words=[80.0] * 8)
    b = _samples("p", ids, logprob=lp, n_tokens=tokens, n_bytes=[400.0] * 8, n_words=[80.0] * 8)
    b[3].metrics["logprob"] = math.nan
    cmp = compare_samples(a, b)
    for row in (r for r in cmp.metrics if r.task == "p"):
        assert row.n == 7 and row.missing == 1
        assert math.isfinite(row.diff) and row.diff == pytest.approx(0.0)


def _null_size(make: object, reps: int = 400) -> float:
    """Share of true-null data sets rejected at 0.05 by compare_samples."""
    rejections = []
    for rep in range(reps):
        a, b, metric = make(np.random.default_rng(rep))  # type: ignore[operator]
        row = next(m for m in compare_samples(a, b, seed=rep).metrics if m.metric == metric)
        rejections.append(row.p_value < 0.05)
    return float(np.mean(rejections))


def test_paired_mean_test_keeps_its_size_at_ten_items() -> None:
    """A bootstrap p-value rejected 9-12% of true nulls at n = 10; the sign flip <= 5.5%."""

    def make(rng: np.random.Generator) -> tuple[list[SampleRecord], ...]:
        item = rng.beta(0.6, 0.6, 10)
        x = np.clip(item + rng.normal(0, 0.15, 10), 0, 1)
        y = np.clip(item + rng.normal(0, 0.15, 10), 0, 1)
        ids = [str(i) for i in range(10)]
        return _samples("g", ids, rouge_l=list(x)), _samples("g", ids, rouge_l=list(y)), "rouge_l"

    assert _null_size(make) <= 0.055 + 0.02  # Monte Carlo margin at 400 reps


def test_paired_ratio_test_keeps_its_size_at_ten_documents() -> None:
    """A bootstrap p-value of the bits-per-byte difference rejected 10-13% at 10 documents."""

    def make(rng: np.random.Generator) -> tuple[object, ...]:
        size = np.maximum(50, rng.lognormal(np.log(4000), 0.8, 10)).round()
        hard = rng.gamma(4, 0.25, 10)
        runs = [-(size * 1.1 * hard + rng.normal(0, 1, 10) * np.sqrt(size) * 3) for _ in "ab"]
        ids = [str(i) for i in range(10)]
        a, b = (
            _samples("p", ids, logprob=list(lp), n_tokens=list(size / 4), n_bytes=list(size))
            for lp in runs
        )
        return a, b, "bits_per_byte"

    assert _null_size(make) <= 0.055 + 0.02


def test_mcnemar_interval_agrees_with_its_p_value() -> None:
    """b = 0, c = 5 gave p = 0.0625 beside a bootstrap interval [0.08, 0.36] that excluded 0."""
    a = _samples("t", [str(i) for i in range(20)], acc=[0] * 5 + [1] * 10 + [0] * 5)
    b = _samples("t", [str(i) for i in range(20)], acc=[1] * 5 + [1] * 10 + [0] * 5)
    row = _row(compare_samples(a, b), "t", "acc")
    assert row.p_value == pytest.approx(0.0625)
    assert row.ci_low <= 0.0 < row.ci_high


def _generation_samples(predictions: list[str], references: list[str]) -> list[SampleRecord]:
    return [
        SampleRecord(
            task="gen",
            id=str(i),
            prompt="",
            prediction=p,
            gold=[r],
            metrics={"bleu": sacrebleu.sentence_bleu(p, [r]).score},
        )
        for i, (p, r) in enumerate(zip(predictions, references, strict=True))
    ]


def test_bleu_is_compared_as_the_corpus_score_the_run_reports() -> None:
    """Not the mean of sentence BLEU (20.4 against a corpus 26.4 on one case)."""
    refs = [
        "the cat sat on the mat today",
        "a quick brown fox jumps over the lazy dog",
        "it is raining in the city again",
        "we will meet at noon near the station",
    ] * 3
    hyp_a = [
        "the cat sat on a mat",
        "a brown fox jumps over a dog",
        "it rains in the city",
        "we meet at noon",
    ] * 3
    hyp_b = [r if i % 2 else h for i, (h, r) in enumerate(zip(hyp_a, refs, strict=True))]
    cmp = compare_samples(_generation_samples(hyp_a, refs), _generation_samples(hyp_b, refs))
    row = _row(cmp, "gen", "bleu")
    assert row.a == pytest.approx(sacrebleu.corpus_bleu(hyp_a, [refs]).score)
    assert row.b == pytest.approx(sacrebleu.corpus_bleu(hyp_b, [refs]).score)
    assert row.diff == pytest.approx(row.b - row.a)
    assert row.test == "corpus_swap_permutation"
    assert row.ci_low <= row.diff <= row.ci_high
