"""Representation and bias: counts and nPMI recomputed with numpy from indicator matrices."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import fisher_exact

from whetstone.audit.bias import BiasAccumulator, default_terms
from whetstone.audit.config import BiasConfig
from whetstone.audit.loading import Record
from whetstone.audit.text import tokens

TERMS = {
    "gender": {"female": ["she", "her", "woman"], "male": ["he", "him", "man"]},
    "religion": {"christian": ["church"], "muslim": ["mosque"]},
}
FILLER = [
    "the",
    "report",
    "said",
    "that",
    "a",
    "new",
    "plan",
    "was",
    "made",
    "for",
    "the",
    "city",
    "and",
    "its",
    "people",
    "today",
]


def corpus(seed: int = 0) -> list[Record]:
    """'she' leans to label 'pos', 'he' to 'neg'; 'kitchen' goes with 'she'."""
    rng = random.Random(seed)
    records = []
    for i in range(800):
        words = rng.choices(FILLER, k=8)
        label = rng.choice(["pos", "neg"])
        r = rng.random()
        if r < 0.25:
            words.append("she")
            label = "pos" if rng.random() < 0.8 else "neg"
            if rng.random() < 0.5:
                words.append("kitchen")
        elif r < 0.5:
            words.append(rng.choice(["he", "man"]))
            label = "neg" if rng.random() < 0.7 else "pos"
        if rng.random() < 0.05:
            words.append("church")
        if rng.random() < 0.01:
            words.append("mosque")
        rng.shuffle(words)
        records.append(Record(i, i + 1, f"r{i}", " ".join(words), label))
    return records


def npmi_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """nPMI between the columns of two boolean record-indicator matrices, with numpy."""
    n = x.shape[0]
    joint = (x.T.astype(float) @ y.astype(float)) / n
    px, py = x.mean(axis=0), y.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(joint / np.outer(px, py))
        out = pmi / -np.log(joint)
    out[joint == 0] = -1.0
    return out


def test_counts_and_label_npmi_against_numpy() -> None:
    records = corpus()
    acc = BiasAccumulator(BiasConfig(terms=TERMS, min_count=5))
    for lo in range(0, len(records), 100):
        acc.add(records[lo : lo + 100])
    section = acc.section()
    token_sets = [set(tokens(r.text)) for r in records]
    groups = [(c, g, set(ws)) for c, gs in TERMS.items() for g, ws in gs.items()]
    g_ind = np.array([[bool(ts & ws) for _c, _g, ws in groups] for ts in token_sets])
    labels = ["neg", "pos"]
    l_ind = np.array([[r.label == lab for lab in labels] for r in records])
    counts = {(c.category, c.group): c.n_records for c in section.groups}
    for j, (c, g, _ws) in enumerate(groups):
        assert counts[(c, g)] == int(g_ind[:, j].sum())
    expected = npmi_matrix(g_ind, l_ind)
    checked = 0
    for a in section.label_associations:
        j = next(k for k, (c, g, _w) in enumerate(groups) if (c, g) == (a.category, a.group))
        i = labels.index(a.target)
        assert a.npmi == pytest.approx(expected[j, i], abs=1e-5)
        joint = int((g_ind[:, j] & l_ind[:, i]).sum())
        n_g, n_l = int(g_ind[:, j].sum()), int(l_ind[:, i].sum())
        table = [[joint, n_g - joint], [n_l - joint, len(records) - n_g - n_l + joint]]
        assert a.p_value == pytest.approx(fisher_exact(table).pvalue)
        checked += 1
    assert checked >= 8  # female, male, christian x 2 labels (mosque is below min_count)
    female_pos = next(
        a for a in section.label_associations if (a.group, a.target) == ("female", "pos")
    )
    assert female_pos.npmi > 0.1 and female_pos.q_value is not None and female_pos.q_value < 0.01


def test_word_npmi_against_numpy() -> None:
    records = corpus(1)
    acc = BiasAccumulator(BiasConfig(terms=TERMS, min_word_count=5, top_words=20))
    acc.add(records)
    section = acc.section()
    token_sets = [set(tokens(r.text)) for r in records]
    female = np.array([bool(ts & {"she", "her", "woman"}) for ts in token_sets])
    words = [a for a in section.word_associations if a.group == "female"]
    assert words and words[0].target == "kitchen"
    for a in words:
        w_ind = np.array([a.target in ts for ts in token_sets])
        assert a.npmi == pytest.approx(npmi_matrix(female[:, None], w_ind[:, None])[0, 0], abs=1e-5)
        assert a.count == int((female & w_ind).sum())


def test_default_terms_load_and_validate() -> None:
    terms = default_terms()
    assert {"gender", "religion", "nationality", "age"} <= set(terms)
    BiasConfig(terms=terms)  # every shipped term is a single word
    with pytest.raises(ValueError, match="one word"):
        BiasConfig(terms={"gender": {"female": ["young woman"]}})
