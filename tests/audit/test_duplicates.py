"""Duplicates: signatures and LSH candidates against datasketch, every pair against its true
Jaccard similarity, recall against brute force on real data."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.conftest import shared_data
from whetstone.audit.config import DuplicatesConfig
from whetstone.audit.duplicates import (
    DuplicateScanner,
    MinHasher,
    band_hashes,
    build_section,
    candidate_pairs,
    lsh_params,
    shingle_hash32,
)
from whetstone.audit.loading import Record
from whetstone.audit.text import char_shingle_hashes, normalize

datasketch = pytest.importorskip("datasketch")

WORDS = [
    "sync",
    "notes",
    "export",
    "markdown",
    "reminder",
    "calendar",
    "invoice",
    "refund",
    "password",
    "login",
    "tag",
    "notebook",
    "search",
    "attachment",
    "offline",
    "widget",
    "template",
    "shortcut",
    "folder",
    "share",
    "link",
    "trash",
    "history",
]


def shingles(text: str, n: int = 5) -> set[str]:
    """Character n-grams of the normalized text padded with NULs, written from the definition."""
    t = normalize(text) + "\0" * (n - 1)
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def jaccard_ref(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def corpus(seed: int = 0, n: int = 300) -> list[str]:
    """Random sentences with planted near copies (a word changed, added or dropped)."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(n)]
    for i in range(0, n, 10):
        words = texts[i].split()
        j = rng.randrange(len(words))
        edit = rng.choice(["swap", "add", "drop"])
        if edit == "swap":
            words[j] = rng.choice(WORDS)
        elif edit == "add":
            words.insert(j, rng.choice(WORDS))
        elif len(words) > 3:
            del words[j]
        texts.append(" ".join(words))
    return texts


def test_shingle_hashes_are_the_defined_sets() -> None:
    texts = ["Hello  World", "ab", "", "The quick brown fox"]
    hashes, offsets = char_shingle_hashes([normalize(t) for t in texts], 5)
    for i, t in enumerate(texts):
        mine = hashes[offsets[i] : offsets[i + 1]]
        assert mine.size == len(normalize(t))
        assert np.unique(mine).size == len(shingles(t)) if t else mine.size == 0


def test_signatures_are_datasketch_minhash_bit_for_bit() -> None:
    texts = [normalize(t) for t in corpus(1, 60)]
    hasher = MinHasher(num_perm=128, seed=1, ngram=5)
    sigs = hasher.signatures(texts)
    hashes, offsets = char_shingle_hashes(texts, 5)
    h32 = shingle_hash32(hashes)
    for i in range(len(texts)):
        ref = datasketch.MinHash(num_perm=128, seed=1, hashfunc=int)
        ref.update_batch(h32[offsets[i] : offsets[i + 1]].tolist())
        np.testing.assert_array_equal(sigs[i], ref.hashvalues)


def test_lsh_candidates_equal_datasketch_minhashlsh() -> None:
    texts = [normalize(t) for t in corpus(2, 200)]
    sigs = MinHasher(128, 1, 5).signatures(texts)
    bands, rows = lsh_params(0.7, 128, 0.9)
    mine = {tuple(p) for p in candidate_pairs(band_hashes(sigs, bands, rows)).tolist()}
    lsh = datasketch.MinHashLSH(num_perm=128, params=(bands, rows))
    sketches = []
    for i, sig in enumerate(sigs):
        m = datasketch.MinHash(num_perm=128, seed=1, hashvalues=sig, scheme="affine32")
        sketches.append(m)
        lsh.insert(i, m)
    ref = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    assert mine == ref
    assert len(ref) > 20  # the planted near copies are there


def _scan(texts: list[str], labels: list[str | None], **cfg: float) -> tuple[list[Record], object]:
    records = [
        Record(i, i + 1, f"r{i}", t, lab)
        for i, (t, lab) in enumerate(zip(texts, labels, strict=True))
    ]
    scanner = DuplicateScanner(DuplicatesConfig(**cfg))
    for lo in range(0, len(records), 37):  # chunks of an odd size
        scanner.add(records[lo : lo + 37])
    return records, build_section(
        scanner, lambda: [records[lo : lo + 50] for lo in range(0, len(records), 50)]
    )


def test_pairs_verified_by_true_jaccard_and_exact_groups() -> None:
    texts = corpus(3, 250)
    labels: list[str | None] = [f"c{i % 3}" for i in range(len(texts))]
    texts += [texts[5], texts[5].upper() + "  ", texts[17]]  # exact copies (normalized)
    labels += [labels[5], labels[5], "other"]  # the copy of texts[17] conflicts
    records, section = _scan(texts, labels)
    # every reported near pair has its true Jaccard similarity, at or above the threshold
    assert section.near_pairs
    for pair in section.near_pairs:
        a, b = int(pair.a[1:]), int(pair.b[1:])
        assert pair.jaccard == pytest.approx(jaccard_ref(texts[a], texts[b]), abs=1e-4)
        assert pair.jaccard >= 0.7
    # exact groups: the groups of equal normalized text, found directly
    groups: dict[str, list[str]] = {}
    for r in records:
        groups.setdefault(normalize(r.text), []).append(r.id)
    expected = sorted(g for g in groups.values() if len(g) > 1)
    assert sorted(g.ids for g in section.exact_groups) == expected
    conflict_ids = [g.ids for g in section.conflicts if g.kind == "exact"]
    assert conflict_ids == [["r17", f"r{len(texts) - 1}"]]


def brute_force_pairs(texts: list[str], min_chars: int = 20) -> set[tuple[str, str]]:
    """All pairs with Jaccard >= 0.7 (different normalized text), from shingle-set sizes and
    intersections computed as a sparse matrix product."""
    import scipy.sparse as sp

    keep = [i for i, t in enumerate(texts) if len(normalize(t)) >= min_chars]
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, i in enumerate(keep):
        for s in shingles(texts[i]):
            rows.append(r)
            cols.append(vocab.setdefault(s, len(vocab)))
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keep), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    norm = [normalize(t) for t in texts]
    out = set()
    for a, b, v in zip(inter.row, inter.col, inter.data, strict=True):
        i, j = keep[a], keep[b]
        if i < j and norm[i] != norm[j] and v / (sizes[a] + sizes[b] - v) >= 0.7:
            out.add((f"r{i}", f"r{j}"))
    return out


def test_recall_against_brute_force_on_planted_pairs() -> None:
    texts = corpus(4, 400)
    _records, section = _scan(texts, [None] * len(texts))
    brute = brute_force_pairs(texts)
    assert any(jaccard_ref(texts[int(a[1:])], texts[int(b[1:])]) >= 0.7 for a, b in brute)
    found = {(p.a, p.b) for p in section.near_pairs}
    assert found <= brute  # verification: nothing below the threshold
    assert len(found & brute) / len(brute) >= 0.95


def test_drop_keeps_one_per_group_and_never_drops_across_labels() -> None:
    base = "the reminder for my weekly meeting does not fire on the phone"
    texts = [base, base + " app", base, "something else entirely about invoices and refunds"]
    labels: list[str | None] = ["bug", "bug", "bug", "billing"]
    texts.append(base + " today")
    labels.append("how_to")  # a near copy with another label: a conflict, not dropped
    _records, section = _scan(texts, labels)
    assert section.exact_groups[0].ids == ["r0", "r2"]
    assert set(section.drop_ids) == {"r1", "r2"}
    near_conflicts = [g.ids for g in section.conflicts if g.kind == "near"]
    assert ["r0", "r4"] in near_conflicts


@pytest.mark.slow
def test_lsh_recall_against_brute_force_on_sst2() -> None:
    """All pairs of 3,000 real SST-2 phrases by sparse matrix products vs the LSH pairs."""
    lines = shared_data("sst2_train.tsv").read_text(encoding="utf-8").splitlines()[1:3001]
    texts = [line.rsplit("\t", 1)[0] for line in lines]
    _records, section = _scan(texts, [None] * len(texts))
    exact_extra = {i for g in section.exact_groups for i in g.ids[1:]}
    brute = {(a, b) for a, b in brute_force_pairs(texts) if not {a, b} & exact_extra}
    found = {(p.a, p.b) for p in section.near_pairs}
    assert len(brute) > 50
    assert found <= brute
    assert len(found) / len(brute) >= 0.95
