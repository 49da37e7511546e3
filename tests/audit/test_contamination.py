"""Contamination: per-item coverage and provenance against a direct n-gram set computation;
the clean/contaminated score split against numpy and statsmodels (Newcombe's interval)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from whetstone.audit.config import ContaminationConfig
from whetstone.audit.contamination import ContaminationScanner, score_split
from whetstone.audit.loading import Record
from whetstone.audit.text import tokens

VOCAB = [f"w{i}" for i in range(60)]


def make_data(seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Training documents and eval items, some copied whole or in part into training."""
    rng = random.Random(seed)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(VOCAB) for _ in range(n))

    evals = [sentence(rng.randint(3, 30)) for _ in range(80)]
    train = [sentence(rng.randint(5, 60)) for _ in range(300)]
    for i in range(0, 80, 5):  # whole items inside training documents
        pos = rng.randrange(len(train))
        train[pos] = f"{sentence(4)} {evals[i]}, {sentence(3)}"
    for i in range(2, 80, 7):  # a 15-token slice of an item
        words = evals[i].split()
        if len(words) > 16:
            train.append(" ".join(words[1:16]).upper())
    train_recs = [Record(i, i + 1, f"t{i}", t) for i, t in enumerate(train)]
    eval_recs = [Record(i, i + 1, f"e{i}", t) for i, t in enumerate(evals)]
    return train_recs, eval_recs


def reference(
    train: list[Record], evals: list[Record], n: int, min_tokens: int
) -> dict[str, tuple[float, set[str]]]:
    """Coverage and matching training ids per item, from Python sets of token tuples."""
    grams: dict[int, dict[tuple[str, ...], set[str]]] = {}
    out = {}
    for item in evals:
        toks = tokens(item.text)
        if len(toks) < min_tokens:
            continue
        k = min(n, len(toks))
        if k not in grams:
            grams[k] = {}
            for doc in train:
                t = tokens(doc.text)
                for i in range(len(t) - k + 1):
                    grams[k].setdefault(tuple(t[i : i + k]), set()).add(doc.id)
        covered = [False] * len(toks)
        sources: set[str] = set()
        for i in range(len(toks) - k + 1):
            gram = tuple(toks[i : i + k])
            if gram in grams[k]:
                covered[i : i + k] = [True] * k
                sources |= grams[k][gram]
        out[item.id] = (sum(covered) / len(toks), sources)
    return out


@pytest.mark.parametrize("chunk", [7, 1000])
def test_coverage_and_provenance_equal_direct_ngram_sets(chunk: int) -> None:
    train, evals = make_data()
    cfg = ContaminationConfig(ngram=13, min_tokens=5, max_sources=1000)
    scanner = ContaminationScanner([("dev", evals)], cfg)
    for lo in range(0, len(train), chunk):
        scanner.scan(train[lo : lo + chunk], lo)
    section = scanner.sections([r.id for r in train])[0]
    ref = reference(train, evals, 13, 5)
    got = {it.eval_id: it for it in section.items}
    expected_any = {k for k, (cov, _s) in ref.items() if cov > 0}
    assert set(got) == expected_any
    assert len(expected_any) >= 16
    for item_id, item in got.items():
        cov, sources = ref[item_id]
        assert item.coverage == pytest.approx(cov, abs=1e-4)
        assert set(item.train_ids) == sources
    assert section.n_checked == len(ref)
    assert section.n_contaminated == sum(cov >= 0.8 for cov, _s in ref.values())
    contaminated = [k for k, (cov, _s) in ref.items() if cov >= 0.8]
    assert set(section.train_ids) == set().union(*(ref[k][1] for k in contaminated))


def test_short_items_are_matched_whole_and_too_short_ones_skipped() -> None:
    train = [Record(0, 1, "t0", "My card got charged twice today, please help me")]
    evals = [
        Record(0, 1, "a", "card got charged twice today"),  # 5 tokens, inside the document
        Record(1, 2, "b", "charged twice"),  # 2 tokens: not checked
        Record(2, 3, "c", "card got charged three times today"),
    ]
    scanner = ContaminationScanner([("dev", evals)], ContaminationConfig())
    scanner.scan(train, 0)
    section = scanner.sections(["t0"])[0]
    assert section.n_checked == 2
    assert [(i.eval_id, i.coverage, i.ngram) for i in section.items] == [("a", 1.0, 5)]


def test_provenance_is_capped_per_ngram() -> None:
    text = "the same thirteen words appear in every one of these training documents right here"
    train = [Record(i, i + 1, f"t{i}", text) for i in range(50)]
    evals = [Record(0, 1, "e", text)]
    scanner = ContaminationScanner([("dev", evals)], ContaminationConfig(max_sources=7))
    scanner.scan(train, 0)
    item = scanner.sections([r.id for r in train])[0].items[0]
    assert item.coverage == 1.0
    assert item.train_ids == [f"t{i}" for i in range(7)]


def test_score_split_against_numpy() -> None:
    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(300)]
    coverage = {
        i: float(c) for i, c in zip(ids, rng.choice([0.0, 0.1, 0.5, 0.9, 1.0], 300), strict=True)
    }
    values = {i: float(rng.random() < (0.9 if coverage[i] >= 0.8 else 0.6)) for i in ids}
    cfg = ContaminationConfig()
    split = score_split(coverage, values, cfg, run_id="r", task="t", metric="acc", seed=0)
    clean = np.array([values[i] for i in ids if coverage[i] < 0.2])
    dirty = np.array([values[i] for i in ids if coverage[i] >= 0.8])
    partial = np.array([values[i] for i in ids if 0.2 <= coverage[i] < 0.8])
    assert split.clean.n == clean.size and split.clean.value == pytest.approx(clean.mean())
    assert split.contaminated.value == pytest.approx(dirty.mean())
    assert split.partial.value == pytest.approx(partial.mean())
    assert split.diff == pytest.approx(dirty.mean() - clean.mean())
    # Newcombe's hybrid score interval of two independent proportions, by statsmodels
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    low, high = proportion.confint_proportions_2indep(
        int(dirty.sum()), dirty.size, int(clean.sum()), clean.size, method="newcomb"
    )
    assert split.ci_low == pytest.approx(low, abs=1e-9)
    assert split.ci_high == pytest.approx(high, abs=1e-9)
    assert split.ci_low < split.diff < split.ci_high
    assert split.p_value is not None and split.p_value < 0.01  # 0.9 vs 0.6 on ~120 items each
