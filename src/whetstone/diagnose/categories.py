"""Counting failures by category: taxonomy categories, detectors and confused label pairs.

Every count comes with its share of all failures and a 95% Wilson interval; a failure can
belong to several categories, so shares need not add up to one.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from whetstone.diagnose.detectors import DETECTORS
from whetstone.diagnose.schema import (
    CategoryResult,
    ConfusedPair,
    DetectorResult,
    Example,
    Observation,
    Share,
)
from whetstone.diagnose.taxonomy import Taxonomy
from whetstone.evaluate.statistics import wilson_ci

__all__ = [
    "category_results",
    "confused_pairs",
    "detector_results",
    "example_of",
    "pick_examples",
    "share",
]

EXAMPLE_CHARS = 400


def share(count: int, n: int) -> Share:
    """count/n with its 95% Wilson interval (0 with [0, 0] when n is 0)."""
    if n == 0:
        return Share(value=0.0, ci_low=0.0, ci_high=0.0)
    low, high = wilson_ci(count, n)
    return Share(value=count / n, ci_low=low, ci_high=high)


def _cut(text: str | None, limit: int = EXAMPLE_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def example_of(o: Observation) -> Example:
    """An observation as a short example (texts cut to a few hundred characters)."""
    return Example(
        uid=o.uid,
        task=o.task,
        item_id=o.item_id,
        prompt=_cut(o.text or o.prompt) or "",
        output=_cut(o.output) or "",
        reference=_cut(o.reference),
        comment=_cut(o.comment),
    )


def pick_examples(observations: Sequence[Observation], k: int = 3) -> list[Example]:
    """``k`` examples in a fixed pseudo-random order (not just the first items of the file)."""
    ranked = sorted(observations, key=lambda o: hashlib.sha1(o.uid.encode()).hexdigest())
    return [example_of(o) for o in ranked[:k]]


def category_results(
    failures: Sequence[Observation],
    taxonomy: Taxonomy,
    by_rules: dict[str, list[str]],
    by_judge: dict[str, str] | None = None,
    k: int = 3,
) -> list[CategoryResult]:
    """One result per taxonomy category, from rule assignments and judge labels (by uid)."""
    n = len(failures)
    results = []
    for cat in taxonomy.categories:
        ruled = {o.uid for o in failures if cat.name in by_rules.get(o.uid, [])}
        judged = {uid for uid, name in (by_judge or {}).items() if name == cat.name}
        members = [o for o in failures if o.uid in ruled or o.uid in judged]
        results.append(
            CategoryResult(
                name=cat.name,
                description=cat.description,
                count=len(members),
                share=share(len(members), n),
                by_rules=len(ruled),
                by_judge=len(judged),
                examples=pick_examples(members, k),
                by_task=dict(Counter(o.task for o in members).most_common()),
                members=[o.uid for o in members],
            )
        )
    return results


def detector_results(
    observations: Sequence[Observation],
    verdicts: Sequence[dict[str, bool]],
    n_failures: int,
    k: int = 3,
) -> list[DetectorResult]:
    """How often each detector fired among the failures and among the checked successes."""
    results = []
    for name, description in DETECTORS.items():
        fired_failures: list[Observation] = []
        applicable = fired_ok = checked_ok = 0
        for o, v in zip(observations, verdicts, strict=True):
            if name not in v:
                continue
            if o.failed:
                applicable += 1
                if v[name]:
                    fired_failures.append(o)
            else:
                checked_ok += 1
                fired_ok += v[name]
        results.append(
            DetectorResult(
                name=name,
                description=description,
                failures=len(fired_failures),
                applicable=applicable,
                share=share(len(fired_failures), n_failures),
                successes=fired_ok,
                successes_checked=checked_ok,
                examples=pick_examples(fired_failures, k),
            )
        )
    return results


def confused_pairs(
    observations: Sequence[Observation], k: int = 2, top: int = 20
) -> list[ConfusedPair]:
    """The most frequent (gold, predicted) confusions of classification and multiple choice.

    For multiple choice the labels are answer positions (A, B, ...), which shows position bias.
    Each pair's share is of the items with that gold label in that task.
    """
    gold_counts: Counter[tuple[str, str]] = Counter()
    pairs: dict[tuple[str, str, str], list[Observation]] = {}
    for o in observations:
        if o.gold_label is None or o.predicted_label is None:
            continue
        gold_counts[(o.task, o.gold_label)] += 1
        if o.failed and o.predicted_label != o.gold_label:
            pairs.setdefault((o.task, o.gold_label, o.predicted_label), []).append(o)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [
        ConfusedPair(
            task=task,
            gold=gold,
            predicted=pred,
            count=len(members),
            share_of_gold=share(len(members), gold_counts[(task, gold)]),
            examples=pick_examples(members, k),
        )
        for (task, gold, pred), members in ranked
    ]
