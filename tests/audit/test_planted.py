"""Against reality: problems planted into AG News and SST-2, with the recall and precision of
the audit per kind.

The base is the confidently labeled part of the real data (records whose label an independent
out-of-fold classifier gives at least 0.8 probability): a label flipped on an ambiguous record
(AG News has world news about markets labeled World) is not clearly an error, and flipping a
mislabeled record corrects it. Precision counts only what the planting added: findings of the
audit of the unmodified base are subtracted.

Duplicates, contamination and personal data are found with at least 95% recall and 90%
precision. The removed topic (Iraq, from AG News) is found as a new gap topic whose eval items
are at least 75% about it. Label flips are found by confident learning on a linear classifier.
The audit runs at its default seed 0; over audit seeds 0-5 the figures were: label flips
0.93-0.98 recall at 0.80-0.85 precision on AG News, 0.83-0.90 at 0.64-0.75 on SST-2 (whose
overlapping phrases make a flipped phrase's near-identical sub-phrases look mislabeled too),
and the Iraq gap topic 79-93% on Iraq. The thresholds sit below those ranges (flips 0.9/0.75
on AG News, 0.8/0.6 on SST-2), and the test prints every figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.audit.planting import Planted, Row, plant
from tests.conftest import shared_data
from whetstone.audit import Audit, AuditConfig, audit

pytestmark = pytest.mark.slow

IRAQ = r"\b(iraq|iraqi|iraqis|baghdad|fallujah|najaf|sadr)\b"


def read_tsv(path: Path, prefix: str, limit: int, header: bool) -> list[Row]:
    lines = path.read_text(encoding="utf-8").splitlines()[int(header) :][:limit]
    rows = []
    for i, line in enumerate(lines):
        text, label = line.rsplit("\t", 1)
        rows.append({"id": f"{prefix}{i}", "text": text.strip(), "label": label})
    return rows


def write_jsonl(path: Path, rows: list[Row]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def confident(rows: list[Row], threshold: float = 0.8) -> list[Row]:
    """The records an independent classifier (TF-IDF unigrams, logistic regression, 5-fold
    out-of-fold) gives their own label with at least ``threshold`` probability."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    classes = sorted({r["label"] for r in rows})
    y = np.array([classes.index(r["label"]) for r in rows])
    model = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2), LogisticRegression(C=10))
    folds = StratifiedKFold(5, shuffle=True, random_state=7)
    probs = cross_val_predict(model, [r["text"] for r in rows], y, cv=folds, method="predict_proba")
    keep = probs[np.arange(len(y)), y] >= threshold
    return [r for r, ok in zip(rows, keep, strict=True) if ok]


def config(**coverage: int) -> AuditConfig:
    cfg = AuditConfig.model_validate(
        {
            "label_issues": {"features": "tfidf"},
            "stats": {"language_sample": 0},
            "coverage": {"max_train": 2000, **coverage},
        }
    )
    return cfg.with_checks(skip=["bias"])


def score(found: set[str], baseline: set[str], planted: set[str]) -> tuple[float, float]:
    """Recall of the planted ids among the findings; precision of the new findings."""
    new = found - baseline
    recall = len(found & planted) / len(planted)
    precision = len(new & planted) / len(new) if new else 1.0
    return recall, precision


def dup_score(result: Audit, base: Audit, planted: Planted, kind: str) -> tuple[float, float]:
    """Recall: a planted copy sits in a group (exact) or pair (near) with its source.
    Precision: of the groups or pairs that the unmodified data did not have, the share that
    involve an inserted record (a copy, or an eval item put inside a training text: those
    are near duplicates of their host); the rest would be duplicates the planting did not
    make."""
    copies = planted.exact if kind == "exact" else planted.near

    def units(a: Audit) -> set[frozenset[str]]:
        d = a.duplicates
        assert d is not None
        if kind == "exact":
            return {frozenset(g.ids) for g in d.exact_groups}
        return {frozenset((p.a, p.b)) for p in d.near_pairs}

    found = units(result)
    together = {c for u in found for c in copies if {c, planted.sources[c]} <= u}
    new = found - units(base)
    correct = [u for u in new if u & planted.inserted]
    return len(together) / len(copies), len(correct) / len(new) if new else 1.0


def char_jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of character n-gram sets of the normalized texts (the definition)."""
    from whetstone.audit.text import normalize

    sa, sb = (
        {t[i : i + n] for i in range(len(t) - n + 1)}
        for t in (normalize(x) + "\0" * (n - 1) for x in (a, b))
    )
    return len(sa & sb) / len(sa | sb)


def keep_true_near_copies(rows: list[Row], planted: Planted) -> None:
    """A one-word edit of a short text can fall below the 0.7 threshold: such a copy is not a
    near duplicate by definition and is not counted."""
    text = {r["id"]: r["text"] for r in rows}
    planted.near = {
        c for c in planted.near if char_jaccard(text[c], text[planted.sources[c]]) >= 0.7
    }
    assert len(planted.near) >= 30


def contaminated(a: Audit) -> set[str]:
    return {i.eval_id for s in a.contamination for i in s.items if i.coverage >= 0.8}


def contamination_score(result: Audit, base: Audit, planted: Planted) -> tuple[float, float]:
    """Recall of the eval items copied into training; precision of the newly contaminated
    items, where an item covered by an inserted record also counts (SST-2's dev phrases are
    parts of one another: copying a sentence also leaks its sub-phrases)."""
    new = contaminated(result) - contaminated(base)
    sources = {i.eval_id: set(i.train_ids) for s in result.contamination for i in s.items}
    explained = {e for e in new if sources[e] & planted.inserted}
    recall = len(contaminated(result) & planted.contaminated) / len(planted.contaminated)
    return recall, len(explained) / len(new) if new else 1.0


def flip_score(result: Audit, base: Audit, planted: Planted) -> tuple[float, float]:
    """Label issues: recall of the flipped records; precision of the new issues, where a
    near-identical twin of a flipped record (now conflicting with it) also counts as found."""
    assert result.label_issues is not None and base.label_issues is not None
    assert result.duplicates is not None
    flagged = {i.id for i in result.label_issues.issues}
    new = flagged - {i.id for i in base.label_issues.issues}
    twins = {
        other
        for p in result.duplicates.near_pairs
        for flipped, other in ((p.a, p.b), (p.b, p.a))
        if flipped in planted.flips
    }
    recall = len(flagged & planted.flips) / len(planted.flips)
    return recall, len(new & (planted.flips | twins)) / len(new) if new else 1.0


def check_kinds(
    result: Audit, base: Audit, planted: Planted, flips: tuple[float, float]
) -> dict[str, tuple[float, float]]:
    pii = {f.record_ids[0] for f in result.findings_of("pii")}
    base_pii = {f.record_ids[0] for f in base.findings_of("pii")}
    scores = {
        "exact duplicates": dup_score(result, base, planted, "exact"),
        "near duplicates": dup_score(result, base, planted, "near"),
        "contamination": contamination_score(result, base, planted),
        "pii": score(pii, base_pii, planted.pii),
        "label flips": flip_score(result, base, planted),
    }
    print({k: (round(r, 3), round(p, 3)) for k, (r, p) in scores.items()})
    for kind, (recall, precision) in scores.items():
        want_recall, want_precision = flips if kind == "label flips" else (0.95, 0.9)
        assert recall >= want_recall, f"{kind}: recall {recall:.3f}"
        assert precision >= want_precision, f"{kind}: precision {precision:.3f}"
    return scores


def topic_share(a: Audit, topic: set[str]) -> list[tuple[float, int]]:
    """For each gap topic: the share of its eval items on the removed topic, and their number."""
    (cov,) = a.coverage
    return [
        (len(set(t.eval_ids) & topic) / len(t.eval_ids), len(t.eval_ids))
        for t in cov.topics
        if t.gap
    ]


def test_planted_problems_in_ag_news(tmp_path: Path) -> None:
    train = confident(read_tsv(shared_data("agnews_dev.tsv"), "tr", 6000, header=False))
    evals = read_tsv(shared_data("agnews_test.tsv"), "te", 1000, header=False)
    rows, planted = plant(train, evals, seed=0, topic=IRAQ)
    keep_true_near_copies(rows, planted)
    assert planted.topic_removed > 100 and len(planted.topic_eval) > 40
    eval_path = write_jsonl(tmp_path / "eval.jsonl", evals)
    cfg = config(max_train=1500)
    base = audit(write_jsonl(tmp_path / "base.jsonl", train), [eval_path], config=cfg)
    result = audit(write_jsonl(tmp_path / "train.jsonl", rows), [eval_path], config=cfg)
    check_kinds(result, base, planted, flips=(0.9, 0.75))
    # The removed topic. AG News's test split has topics of its own (the Athens Olympics are
    # gaps against the dev split already), so the planted gap is the one the base lacks: a gap
    # topic whose eval items are at least 75% about Iraq, where the base has none.
    before = topic_share(base, planted.topic_eval)
    after = topic_share(result, planted.topic_eval)
    print("gap topics (share on Iraq, eval items):", before, "->", after)
    assert not [x for x in before if x[0] >= 0.5]
    found = [x for x in after if x[0] >= 0.75]
    assert found
    (cov,) = result.coverage
    on_topic = {i for t in cov.topics if t.gap for i in t.eval_ids} & planted.topic_eval
    print(f"Iraq eval items in the found topics: {len(on_topic)} of {len(planted.topic_eval)}")


def test_planted_problems_in_sst2(tmp_path: Path) -> None:
    train = confident(read_tsv(shared_data("sst2_train.tsv"), "s", 20000, header=True))
    evals = read_tsv(shared_data("sst2_dev.tsv"), "d", 7000, header=True)
    eval_path = write_jsonl(tmp_path / "eval.jsonl", evals)
    cfg = config().with_checks(skip=["bias", "coverage"])
    base = audit(write_jsonl(tmp_path / "base.jsonl", train), [eval_path], config=cfg)
    # SST-2's dev phrases already occur in its training phrases: plant the others only
    rows, planted = plant(train, evals, seed=1, exclude_eval=contaminated(base))
    keep_true_near_copies(rows, planted)
    result = audit(write_jsonl(tmp_path / "train.jsonl", rows), [eval_path], config=cfg)
    check_kinds(result, base, planted, flips=(0.8, 0.6))
