"""Metric aggregation checked against sklearn, sacrebleu, rouge_score and hand-written loops."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tests.evaluate.references import bca_of
from whetstone.evaluate.metrics import (
    classification_metrics,
    count_bytes,
    count_words,
    exact_match,
    generation_metrics,
    mean_metric,
    multiple_choice_metrics,
    normalize_answer,
    perplexity_metrics,
    rouge_l,
    token_f1,
)

# ----------------------------------------------------------------------------- helpers


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def _ece_loop(confidences: list[float], correct: list[float], n_bins: int = 10) -> float:
    """Textbook ECE: bins (lo, hi], weight |bin| / n, |accuracy - mean confidence|."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(confidences) if (lo < c <= hi) or (b == 0 and c == 0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidences[i] for i in members) / len(members)
            total += len(members) / len(confidences) * abs(acc - conf)
    return total


# ----------------------------------------------------------------------------- mean_metric


def test_mean_metric_binary_uses_wilson_and_continuous_bootstrap() -> None:
    from scipy.stats import binomtest

    m = mean_metric([1, 0, 1, 1, 0, 1, 1, 1], binary=True)
    ref = binomtest(6, 8).proportion_ci(method="wilson")
    assert (m.value, m.n) == (0.75, 8)
    assert (m.ci_low, m.ci_high) == pytest.approx((ref.low, ref.high))
    c = mean_metric(np.random.default_rng(0).normal(size=100))
    assert c.ci_low is not None and c.ci_high is not None
    assert c.ci_low < c.value < c.ci_high


def test_mean_metric_edge_cases() -> None:
    with pytest.raises(ValueError, match="no items"):
        mean_metric([])
    single = mean_metric([0.4])
    assert (single.value, single.ci_low, single.ci_high, single.n) == (0.4, None, None, 1)
    assert mean_metric([1.0], binary=True).ci_low is not None  # Wilson is defined for n = 1
    with pytest.raises(ValueError, match="0 or 1"):
        mean_metric([0.5], binary=True)
    with pytest.raises(ValueError, match="NaN"):
        mean_metric([1.0, float("nan")])


# ----------------------------------------------------------------------------- multiple choice


def test_acc_norm_differs_from_acc_when_lengths_matter() -> None:
    # choice 0 is short ("No", 2 chars), choice 1 long ("Yes, because ...", 20 chars)
    lls = [[-3.0, -10.0]]
    lengths = [[2, 20]]
    aggregates, items = multiple_choice_metrics(lls, lengths, [1])
    # acc: argmax(-3, -10) = 0 -> wrong; acc_norm: argmax(-1.5, -0.5) = 1 -> right
    assert items[0]["acc"] == 0.0
    assert items[0]["acc_norm"] == 1.0
    aggregates, items = multiple_choice_metrics(lls, lengths, [0])
    assert (items[0]["acc"], items[0]["acc_norm"]) == (1.0, 0.0)
    assert aggregates["acc"].value == 1.0 and aggregates["acc_norm"].value == 0.0


def test_multiple_choice_ties_pick_first_choice() -> None:
    _, items = multiple_choice_metrics([[-1.0, -1.0, -2.0]], [[3, 3, 3]], [0])
    assert items[0]["acc"] == 1.0
    _, items = multiple_choice_metrics([[-1.0, -1.0, -2.0]], [[3, 3, 3]], [1])
    assert items[0]["acc"] == 0.0


def _random_mc(n: int, seed: int) -> tuple[list[list[float]], list[list[int]], list[int]]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(2, 6, size=n)
    lls = [list(rng.normal(-8, 3, size=k)) for k in counts]
    lengths = [list(rng.integers(1, 40, size=k)) for k in counts]
    gold = [int(rng.integers(0, k)) for k in counts]
    return lls, lengths, gold


def test_multiple_choice_against_loops() -> None:
    lls, lengths, gold = _random_mc(300, 1)
    aggregates, items = multiple_choice_metrics(lls, lengths, gold)
    acc, acc_norm, brier, conf = [], [], [], []
    for row, lens, g in zip(lls, lengths, gold, strict=True):
        probs = _softmax(row)
        best = max(range(len(row)), key=lambda j: (row[j], -j))
        best_norm = max(range(len(row)), key=lambda j: (row[j] / lens[j], -j))
        acc.append(float(best == g))
        acc_norm.append(float(best_norm == g))
        brier.append(sum((p - (1.0 if j == g else 0.0)) ** 2 for j, p in enumerate(probs)))
        conf.append(max(probs))
    assert aggregates["acc"].value == pytest.approx(sum(acc) / len(acc))
    assert aggregates["acc_norm"].value == pytest.approx(sum(acc_norm) / len(acc_norm))
    assert aggregates["brier"].value == pytest.approx(sum(brier) / len(brier))
    assert aggregates["ece"].value == pytest.approx(_ece_loop(conf, acc))
    assert [it["brier"] for it in items] == pytest.approx(brier)
    assert [it["confidence"] for it in items] == pytest.approx(conf)
    for metric in aggregates.values():
        assert metric.n == 300
        assert metric.ci_low is not None and metric.ci_high is not None
        assert metric.ci_low <= metric.value <= metric.ci_high


def test_multiple_choice_brier_matches_lm_eval() -> None:
    lm_metrics = pytest.importorskip("lm_eval.api.metrics")
    rng = np.random.default_rng(2)
    lls = [list(rng.normal(-5, 2, size=4)) for _ in range(50)]
    gold = [int(g) for g in rng.integers(0, 4, size=50)]
    aggregates, _ = multiple_choice_metrics(lls, [[5] * 4] * 50, gold)
    items = [(g, np.array(_softmax(row))) for g, row in zip(gold, lls, strict=True)]
    assert aggregates["brier"].value == pytest.approx(lm_metrics.brier_score(items))


def test_ece_interval_is_the_image_of_bonferroni_clopper_pearson_bins() -> None:
    """ECE's interval by hand: statsmodels' Clopper-Pearson per non-empty bin at 1 - 0.05 / bins,
    shifted by the bin's mean confidence; the ECE runs from the least to the largest |gap|."""
    from statsmodels.stats.proportion import proportion_confint

    lls, lengths, gold = _random_mc(60, 3)
    aggregates, items = multiple_choice_metrics(lls, lengths, gold, seed=4, n_boot=150)
    conf = [it["confidence"] for it in items]
    acc = [it["acc"] for it in items]
    bins = [[i for i, c in enumerate(conf) if b / 10 < c <= (b + 1) / 10] for b in range(10)]
    bins = [members for members in bins if members]
    low = high = 0.0
    for members in bins:
        hits = sum(acc[i] for i in members)
        lo, hi = proportion_confint(hits, len(members), 0.05 / len(bins), method="beta")
        mean_conf = sum(conf[i] for i in members) / len(members)
        gaps = (lo - mean_conf, hi - mean_conf)
        least = 0.0 if gaps[0] <= 0 <= gaps[1] else min(abs(g) for g in gaps)
        low += len(members) / 60 * least
        high += len(members) / 60 * max(abs(g) for g in gaps)
    ece = aggregates["ece"]
    assert (ece.ci_low, ece.ci_high) == pytest.approx((low, high))
    assert ece.value == pytest.approx(_ece_loop(conf, acc))
    assert ece.method == "ece_projection"


def test_ece_interval_covers_zero_for_a_calibrated_model() -> None:
    """A calibrated model (correct ~ Bernoulli(confidence)) at 200 items: the plug-in ECE is
    about 0.05 and a percentile bootstrap never reaches 0; the interval must cover 0."""
    rng = np.random.default_rng(21)
    covered, plug_in, debiased = [], [], []
    for _ in range(200):
        p_top = rng.uniform(0.5, 1.0, size=200)
        correct = rng.random(200) < p_top
        lls = [[math.log(p), math.log(1 - p)] for p in p_top]
        gold = [0 if c else 1 for c in correct]
        aggregates, _ = multiple_choice_metrics(lls, [[1, 1]] * 200, gold, n_boot=20)
        covered.append(aggregates["ece"].ci_low == 0.0)
        plug_in.append(aggregates["ece"].value)
        debiased.append(aggregates["ece_debiased"].value)
    assert np.mean(covered) >= 0.93
    assert np.mean(plug_in) > 0.03
    assert np.mean(debiased) < 0.5 * np.mean(plug_in)


def test_multiple_choice_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no items"):
        multiple_choice_metrics([], [], [])
    with pytest.raises(ValueError, match="gold"):
        multiple_choice_metrics([[-1.0, -2.0]], [[1, 1]], [2])
    with pytest.raises(ValueError, match="differ in length"):
        multiple_choice_metrics([[-1.0, -2.0]], [[1, 1]], [0, 1])


def test_multiple_choice_single_item() -> None:
    aggregates, _ = multiple_choice_metrics([[-1.0, -2.0]], [[1, 1]], [0])
    assert aggregates["brier"].ci_low is None and aggregates["brier"].too_few
    assert aggregates["brier"].note
    assert aggregates["acc"].ci_low is not None  # Wilson
    ece = aggregates["ece"]  # one Wilson bin: wide, never a point
    assert ece.ci_low is not None and ece.ci_high is not None and ece.ci_high - ece.ci_low > 0.3


# ----------------------------------------------------------------------------- classification


def _random_classification(
    n: int, k: int, seed: int, junk: float = 0.0
) -> tuple[list[str], list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = [f"class_{i}" for i in range(k)]
    gold = [labels[i] for i in rng.integers(0, k, size=n)]
    # the last class is never predicted; some predictions fall outside the label set
    guesses = [labels[i] for i in rng.integers(0, k - 1, size=n)]
    hits = rng.random(n) < 0.4
    predicted = [
        g if hit and g != labels[-1] else q for g, q, hit in zip(gold, guesses, hits, strict=True)
    ]
    predicted = [
        p if label_ok else "unparsed"
        for p, label_ok in zip(predicted, rng.random(n) >= junk, strict=True)
    ]
    return gold, predicted, labels


@pytest.mark.parametrize(
    ("k", "junk", "seed"), [(3, 0.0, 0), (4, 0.0, 1), (5, 0.0, 2), (4, 0.15, 3), (3, 0.3, 4)]
)
def test_classification_point_metrics_match_sklearn(k: int, junk: float, seed: int) -> None:
    gold, predicted, labels = _random_classification(400, k, seed, junk)
    aggregates, tables, items = classification_metrics(gold, predicted, labels, n_boot=50)
    assert aggregates["accuracy"].value == pytest.approx(accuracy_score(gold, predicted))
    for average in ("macro", "micro", "weighted"):
        suffix = f"_{average}"
        p, r, f, _ = precision_recall_fscore_support(
            gold, predicted, labels=labels, average=average, zero_division=0
        )
        assert aggregates[f"precision{suffix}"].value == pytest.approx(p)
        assert aggregates[f"recall{suffix}"].value == pytest.approx(r)
        assert aggregates[f"f1{suffix}"].value == pytest.approx(f)
    p, r, f, s = precision_recall_fscore_support(
        gold, predicted, labels=labels, average=None, zero_division=0
    )
    for i, label in enumerate(labels):
        row = tables["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert row["support"] == s[i]
    assert labels[-1] in gold and labels[-1] not in predicted
    assert tables["per_class"][labels[-1]]["precision"] == 0.0  # zero_division=0
    expected_cm = confusion_matrix(gold, predicted, labels=labels)
    assert tables["confusion_matrix"]["labels"] == labels
    assert tables["confusion_matrix"]["matrix"] == expected_cm.tolist()
    out_of_labels = [
        sum(1 for g, q in zip(gold, predicted, strict=True) if g == lab and q not in labels)
        for lab in labels
    ]
    assert tables["confusion_matrix"]["out_of_labels"] == out_of_labels
    assert [it["accuracy"] for it in items] == [
        float(g == q) for g, q in zip(gold, predicted, strict=True)
    ]


def test_classification_out_of_label_prediction_is_wrong_for_every_class() -> None:
    labels = ["pos", "neg"]
    gold = ["pos", "pos", "neg", "neg"]
    predicted = ["pos", "???", "neg", "neg"]
    aggregates, tables, _ = classification_metrics(gold, predicted, labels, n_boot=20)
    assert aggregates["accuracy"].value == 0.75
    # by hand: pos P=1/1 R=1/2 F1=2/3; neg P=2/2 R=2/2 F1=1
    assert tables["per_class"]["pos"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert aggregates["f1_macro"].value == pytest.approx((2 / 3 + 1) / 2)
    assert aggregates["precision_micro"].value == pytest.approx(1.0)  # 3 of 3 in-label predictions
    assert aggregates["recall_micro"].value == pytest.approx(0.75)


def test_classification_macro_recall_interval_is_mover_over_wilson_classes() -> None:
    """Macro recall's interval by hand: statsmodels' Wilson per class (independent given the
    class counts), combined by MOVER: mean -/+ sqrt(sum((r_k - l_k)^2)) / K."""
    from statsmodels.stats.proportion import proportion_confint

    gold, predicted, labels = _random_classification(300, 3, 5)
    aggregates, tables, _ = classification_metrics(gold, predicted, labels, seed=6, n_boot=300)
    recalls, downs, ups = [], [], []
    for label in labels:
        row = tables["per_class"][label]
        hits = round(row["recall"] * row["support"])
        lo, hi = proportion_confint(hits, row["support"], 0.05, method="wilson")
        recalls.append(row["recall"])
        downs.append(row["recall"] - lo)
        ups.append(hi - row["recall"])
    mean = np.mean(recalls)
    expected = (
        mean - np.sqrt(np.sum(np.square(downs))) / 3,
        mean + np.sqrt(np.sum(np.square(ups))) / 3,
    )
    got = aggregates["recall_macro"]
    # the bootstrap correlation between classes' recalls is near 0 here, not exactly 0
    assert (got.ci_low, got.ci_high) == pytest.approx(expected, abs=0.01)
    assert got.method == "mover_wilson"


def _rare_class_draw(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """Three classes, the last at 3% of items; the rare class is recalled 70% of the time."""
    gold = rng.choice(3, size=n, p=[0.57, 0.40, 0.03])
    right = rng.random(n) < np.array([0.85, 0.8, 0.7])[gold]
    other = (gold + rng.integers(1, 3, size=n)) % 3
    pred = np.where(right, gold, other)
    return [str(g) for g in gold], [str(p) for p in pred]


def test_classification_macro_intervals_cover_with_a_rare_class() -> None:
    """Percentile bootstraps covered 83% at n = 100 with a 3% class; the target is >= 93%."""
    rng = np.random.default_rng(31)
    conf = np.array([[0.85, 0.075, 0.075], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
    joint = np.array([0.57, 0.40, 0.03])[:, None] * conf
    recall = np.diag(conf).mean()
    f1 = np.mean(2 * np.diag(joint) / (joint.sum(axis=1) + joint.sum(axis=0)))
    hits = {"recall_macro": [], "f1_macro": []}
    for rep in range(150):
        gold, pred = _rare_class_draw(rng, 100)
        aggregates, _, _ = classification_metrics(gold, pred, ["0", "1", "2"], seed=rep, n_boot=200)
        for name, truth in (("recall_macro", recall), ("f1_macro", f1)):
            m = aggregates[name]
            hits[name].append(m.ci_low <= truth <= m.ci_high)
    assert np.mean(hits["recall_macro"]) >= 0.9
    assert np.mean(hits["f1_macro"]) >= 0.9


def test_classification_binary_positive_class_matches_sklearn() -> None:
    from sklearn.metrics import precision_recall_fscore_support as prfs

    gold, predicted, _ = _random_classification(200, 2, 9)
    labels = ["class_0", "class_1"]
    predicted = [p if p in labels else "class_0" for p in predicted]
    aggregates, _, _ = classification_metrics(gold, predicted, labels, positive="class_0")
    p, r, f, _ = prfs(gold, predicted, pos_label="class_0", average="binary", zero_division=0)
    assert aggregates["precision_binary"].value == pytest.approx(p)
    assert aggregates["recall_binary"].value == pytest.approx(r)
    assert aggregates["f1_binary"].value == pytest.approx(f)
    f1 = aggregates["f1_binary"]
    assert f1.ci_low is not None and f1.ci_high is not None and f1.ci_low < f1.value < f1.ci_high
    with pytest.raises(ValueError, match="positive"):
        classification_metrics(gold, predicted, labels, positive="nope")


def test_classification_macro_f1_interval_is_fast() -> None:
    gold, predicted, labels = _random_classification(7600, 4, 7, junk=0.05)
    start = time.perf_counter()
    aggregates, _, _ = classification_metrics(gold, predicted, labels, n_boot=1000)
    assert time.perf_counter() - start < 3.0
    f1 = aggregates["f1_macro"]
    assert f1.ci_low is not None and f1.ci_high is not None
    assert f1.ci_low < f1.value < f1.ci_high


def test_classification_probabilities_ece_and_brier_against_loops() -> None:
    rng = np.random.default_rng(8)
    labels = ["a", "b", "c"]
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=200)
    gold = [labels[i] for i in rng.integers(0, 3, size=200)]
    predicted = [labels[int(np.argmax(row))] for row in probs]
    aggregates, _, items = classification_metrics(gold, predicted, labels, probs, n_boot=100)
    brier, conf, correct = [], [], []
    for row, g in zip(probs.tolist(), gold, strict=True):
        brier.append(sum((p - (1.0 if labels[j] == g else 0.0)) ** 2 for j, p in enumerate(row)))
        conf.append(max(row))
        correct.append(float(labels[row.index(max(row))] == g))
    assert aggregates["brier"].value == pytest.approx(sum(brier) / len(brier))
    assert aggregates["ece"].value == pytest.approx(_ece_loop(conf, correct))
    assert [it["brier"] for it in items] == pytest.approx(brier)


def test_classification_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no items"):
        classification_metrics([], [], ["a"])
    with pytest.raises(ValueError, match="not in labels"):
        classification_metrics(["z"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="sum to 1"):
        classification_metrics(
            ["a", "b"], ["a", "b"], ["a", "b"], np.array([[0.5, 0.6], [0.5, 0.5]])
        )
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(["a", "b"], ["a", "b"], ["a", "b"], np.array([[1.0], [1.0]]))


def test_classification_single_item_never_gets_a_point_interval() -> None:
    aggregates, _, _ = classification_metrics(["a"], ["a"], ["a", "b"])
    f1 = aggregates["f1_macro"]
    assert f1.n == 1 and f1.ci_low is not None and f1.ci_high is not None
    assert f1.ci_high - f1.ci_low > 0.5 and f1.note


# ----------------------------------------------------------------------------- perplexity


def test_perplexity_metrics_match_hand_formulas() -> None:
    logprobs = [-120.5, -33.25, -410.0, -7.75, -60.0]
    tokens = [40, 12, 150, 3, 25]
    words = [30, 9, 101, 2, 20]
    nbytes = [160, 50, 600, 11, 90]
    m = perplexity_metrics(logprobs, tokens, words, nbytes, n_boot=200)
    total_lp = sum(logprobs)
    assert m["perplexity"].value == pytest.approx(math.exp(-total_lp / sum(tokens)))
    assert m["word_perplexity"].value == pytest.approx(math.exp(-total_lp / sum(words)))
    assert m["byte_perplexity"].value == pytest.approx(math.exp(-total_lp / sum(nbytes)))
    assert m["bits_per_byte"].value == pytest.approx(-total_lp / sum(nbytes) / math.log(2))
    # corpus-level, not the mean of per-document perplexities
    per_doc_mean = np.mean([math.exp(-lp / t) for lp, t in zip(logprobs, tokens, strict=True)])
    assert m["perplexity"].value != pytest.approx(per_doc_mean)
    for metric in m.values():
        assert metric.n == 5 and metric.method == "bootstrap_t_ratio"
        assert metric.ci_low is not None and metric.ci_high is not None
        assert metric.ci_low <= metric.value <= metric.ci_high


def test_perplexity_matches_lm_eval_aggregations() -> None:
    lm_metrics = pytest.importorskip("lm_eval.api.metrics")
    rng = np.random.default_rng(9)
    logprobs = list(-rng.uniform(10, 500, size=20))
    words = [int(w) for w in rng.integers(5, 100, size=20)]
    nbytes = [int(b) for b in rng.integers(20, 600, size=20)]
    m = perplexity_metrics(logprobs, words, words, nbytes, n_boot=50)
    pairs_w = list(zip(logprobs, words, strict=True))
    pairs_b = list(zip(logprobs, nbytes, strict=True))
    assert m["word_perplexity"].value == pytest.approx(lm_metrics.weighted_perplexity(pairs_w))
    assert m["byte_perplexity"].value == pytest.approx(lm_metrics.weighted_perplexity(pairs_b))
    assert m["bits_per_byte"].value == pytest.approx(lm_metrics.bits_per_byte(pairs_b))


def test_word_and_byte_counts_follow_lm_eval() -> None:
    assert count_words("hello  world\nfoo") == 3
    assert count_words(" leading space") == 3  # re.split keeps the empty first field
    assert count_words("") == 1
    assert count_bytes("héllo") == 6
    assert count_bytes("日本") == 6
    lm_task = pytest.importorskip("lm_eval.api.task")
    for text in ["a b  c", " x\ty\n", "naïve café ☕"]:
        assert count_words(text) == lm_task.ConfigurableTask.count_words(text)
        assert count_bytes(text) == lm_task.ConfigurableTask.count_bytes(text)


def test_perplexity_edge_cases() -> None:
    with pytest.raises(ValueError, match="no items"):
        perplexity_metrics([], [], [], [])
    single = perplexity_metrics([-10.0], [5], [4], [20])
    assert single["perplexity"].value == pytest.approx(math.exp(2.0))
    assert single["perplexity"].ci_low is None


# ----------------------------------------------------------------------------- generation


def test_normalize_answer_squad() -> None:
    assert normalize_answer("  The Quick, brown FOX!  ") == "quick brown fox"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_and_token_f1_by_hand() -> None:
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("a dog", ["cat", "Dog."]) == 1.0
    assert exact_match("dogs", ["dog"]) == 0.0
    # pred tokens [quick, brown, fox]; ref [quick, fox, jumps]: 2 common -> P = R = 2/3
    assert token_f1("the quick brown fox", ["quick fox jumps"]) == pytest.approx(2 / 3)
    # second reference [brown, fox]: P = 2/3, R = 1 -> F1 = 0.8; max over references
    assert token_f1("the quick brown fox", ["quick fox jumps", "brown fox"]) == pytest.approx(0.8)
    assert token_f1("red red", ["red"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("nothing", ["else"]) == 0.0
    assert token_f1("the", ["a"]) == 1.0  # both normalize to empty
    with pytest.raises(ValueError):
        exact_match("x", [])


def test_rouge_l_matches_rouge_score() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    pred = "the cat sat on the mat"
    refs = ["a cat was sitting on the mat", "the dog sat on a log"]
    expected = max(scorer.score(r, pred)["rougeL"].fmeasure for r in refs)
    assert rouge_l(pred, refs) == pytest.approx(expected)


def _generation_data() -> tuple[list[str], list[list[str]]]:
    predictions = [
        "The cat sat on the mat.",
        "It is raining heavily today.",
        "Paris is the capital of France.",
        "He plays guitar every evening.",
        "The results were not significant.",
        "Quantum computers use qubits.",
        "She bought three apples and a pear.",
        "Nothing here matches.",
    ]
    references = [
        ["The cat is sitting on the mat.", "A cat sat on the mat."],
        ["It rains a lot today."],
        ["The capital of France is Paris.", "Paris is France's capital.", "Paris."],
        ["Every evening he plays the guitar."],
        ["The results were not statistically significant."],
        ["Qubits are used by quantum computers.", "Quantum computers rely on qubits."],
        ["She bought three apples and one pear."],
        ["Completely different sentence."],
    ]
    return predictions, references


def test_generation_corpus_scores_match_sacrebleu() -> None:
    predictions, references = _generation_data()
    aggregates, items = generation_metrics(predictions, references, n_boot=100, corpus_n_boot=50)
    width = max(len(r) for r in references)
    streams = [[r[j] if j < len(r) else None for r in references] for j in range(width)]
    assert aggregates["bleu"].value == pytest.approx(
        sacrebleu.corpus_bleu(predictions, streams).score
    )
    assert aggregates["chrf"].value == pytest.approx(
        sacrebleu.corpus_chrf(predictions, streams).score
    )
    for item, pred, refs in zip(items, predictions, references, strict=True):
        assert item["bleu"] == pytest.approx(sacrebleu.sentence_bleu(pred, refs).score)
        assert item["chrf"] == pytest.approx(sacrebleu.sentence_chrf(pred, refs).score)
        assert item["exact_match"] == exact_match(pred, refs)
    assert aggregates["token_f1"].value == pytest.approx(np.mean([it["token_f1"] for it in items]))
    assert aggregates["rouge_l"].value == pytest.approx(np.mean([it["rouge_l"] for it in items]))


def test_generation_single_reference_streams_match_sacrebleu() -> None:
    predictions = ["a b c d e", "f g h i", "hello world again"]
    references = [["a b c d x"], ["f g h j"], ["hello there world again"]]
    aggregates, _ = generation_metrics(predictions, references, corpus_n_boot=20)
    stream = [[r[0] for r in references]]
    assert aggregates["bleu"].value == pytest.approx(
        sacrebleu.corpus_bleu(predictions, stream).score
    )
    assert aggregates["chrf"].value == pytest.approx(
        sacrebleu.corpus_chrf(predictions, stream).score
    )


def test_generation_corpus_bootstrap_matches_resampled_sacrebleu() -> None:
    """The interval is the textbook BCa of sacrebleu's public corpus scores on each resampled
    corpus, its acceleration from leaving each item out (n < 200: one item per group)."""
    predictions, references = _generation_data()
    predictions, references = predictions * 3, references * 3
    n, n_boot = len(predictions), 60
    aggregates, _ = generation_metrics(predictions, references, seed=3, corpus_n_boot=n_boot)
    draws = np.random.default_rng(3).integers(0, n, size=(n_boot, n))
    pairs = list(zip(predictions, references, strict=True))
    for name, scorer in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):

        def score(items: list[object], scorer: object = scorer) -> float:
            preds = [p for p, _ in items]  # type: ignore[misc]
            refs = [r for _, r in items]  # type: ignore[misc]
            width = max(len(r) for r in refs)
            streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
            return float(scorer(preds, streams).score)  # type: ignore[operator]

        low, high = bca_of(pairs, score, draws)  # type: ignore[arg-type]
        assert (aggregates[name].ci_low, aggregates[name].ci_high) == pytest.approx((low, high))
        assert aggregates[name].method == "bca"


def test_generation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no items"):
        generation_metrics([], [])
    with pytest.raises(ValueError, match="non-empty"):
        generation_metrics(["x"], [[]])
    with pytest.raises(ValueError, match="differ in length"):
        generation_metrics(["x", "y"], [["x"]])
