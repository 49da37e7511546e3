"""Counting failures by category: taxonomy categories, detectors and confused label pairs.

Every count comes with its share of all failures and a 95% Wilson interval (with the item as
the unit when an item has several observations); a failure can belong to several categories,
so shares need not add up to one.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Hashable, Sequence

import numpy as np

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
from whetstone.evaluate.statistics import clustered_wilson_ci, wilson_ci

__all__ = [
    "category_results",
    "confused_pairs",
    "detector_results",
    "example_of",
    "pick_examples",
    "share",
    "share_of",
    "share_over",
    "unit_of",
]

EXAMPLE_CHARS = 400


def share(count: int, n: int) -> Share:
    """count/n of independent observations with its 95% Wilson interval; with n = 0, the
    value 0 flagged too_few with the whole range [0, 1] (never a point interval)."""
    if n == 0:
        note = "no observations: nothing to estimate"
        return Share(value=0.0, ci_low=0.0, ci_high=1.0, too_few=True, note=note)
    low, high = wilson_ci(count, n)
    return Share(value=count / n, ci_low=low, ci_high=high)


def unit_of(o: Observation) -> tuple[str, str]:
    """The independent unit of an observation: its item within its task (the runs of one
    item, or the judgments several people made of it, correlate)."""
    return (o.task, o.item_id)


def share_over(hits: Sequence[bool], units: Sequence[Hashable]) -> Share:
    """The share of ``hits`` with a 95% interval whose unit is ``units`` (e.g. items).

    Wilson when every unit occurs once; otherwise Wilson on the units' effective sample size
    (clustered: several judgments of one item counted as independent covered 75-80%).
    With a single unit the one-unit interval is given, flagged too_few.
    """
    n = len(hits)
    if n == 0 or len(set(units)) == n:
        return share(int(sum(bool(h) for h in hits)), n)
    codes = {u: i for i, u in enumerate(dict.fromkeys(units))}
    index = np.array([codes[u] for u in units])
    successes = np.bincount(index, weights=np.asarray(hits, dtype=float), minlength=len(codes))
    trials = np.bincount(index, minlength=len(codes))
    low, high = clustered_wilson_ci(successes, trials)
    value = float(successes.sum()) / n
    if len(codes) < 2:
        note = "one item behind every observation: the spread between items is unknown"
        return Share(
            value=value,
            ci_low=low,
            ci_high=high,
            method="clustered_wilson",
            too_few=True,
            note=note,
        )
    return Share(value=value, ci_low=low, ci_high=high, method="clustered_wilson")


def share_of(members: Collection[str], population: Sequence[Observation]) -> Share:
    """The share of ``population`` whose uid is in ``members``, with items as the unit."""
    return share_over([o.uid in members for o in population], [unit_of(o) for o in population])


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
                share=share_of({o.uid for o in members}, failures),
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
    for name in DETECTORS.names():
        description = DETECTORS.metadata(name)["description"]
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
                share=_fired_share(fired_failures, observations, n_failures),
                successes=fired_ok,
                successes_checked=checked_ok,
                examples=pick_examples(fired_failures, k),
            )
        )
    return results


def _fired_share(
    fired: Sequence[Observation], observations: Sequence[Observation], n_failures: int
) -> Share:
    """Share of all failures a detector fired on (items as the unit when every failure is
    among the observations checked, else over the count)."""
    failed = [o for o in observations if o.failed]
    if len(failed) != n_failures:
        return share(len(fired), n_failures)
    return share_of({o.uid for o in fired}, failed)


def confused_pairs(
    observations: Sequence[Observation], k: int = 2, top: int = 20
) -> list[ConfusedPair]:
    """The most frequent (gold, predicted) confusions of classification and multiple choice.

    For multiple choice the labels are answer positions (A, B, ...), which shows position bias.
    Each pair's share is of the items with that gold label in that task.
    """
    golds: dict[tuple[str, str], list[Observation]] = {}
    pairs: dict[tuple[str, str, str], list[Observation]] = {}
    for o in observations:
        if o.gold_label is None or o.predicted_label is None:
            continue
        golds.setdefault((o.task, o.gold_label), []).append(o)
        if o.failed and o.predicted_label != o.gold_label:
            pairs.setdefault((o.task, o.gold_label, o.predicted_label), []).append(o)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    return [
        ConfusedPair(
            task=task,
            gold=gold,
            predicted=pred,
            count=len(members),
            share_of_gold=share_of({o.uid for o in members}, golds[(task, gold)]),
            examples=pick_examples(members, k),
        )
        for (task, gold, pred), members in ranked
    ]
