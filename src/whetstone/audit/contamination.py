"""Contamination: eval items whose word n-grams occur in the training data.

As in the GPT-3 and Llama 2 reports, text is compared as lower-cased word tokens. Each eval item
contributes its n-grams (13 by default; an item shorter than n contributes itself whole); the
training data is streamed once and every training n-gram is looked up in the eval n-grams.
An item's coverage is the share of its tokens inside at least one n-gram found in training:
contaminated at ``contaminated_at`` or more (0.8), clean below ``clean_below`` (0.2), partial in
between. With an evaluation run, the metric is compared on clean and contaminated items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from whetstone.audit.config import ContaminationConfig
from whetstone.audit.loading import Record
from whetstone.audit.schema import ContaminatedItem, ContaminationSection, GroupScore, ScoreSplit
from whetstone.audit.text import preview, tokens, word_ngram_hashes
from whetstone.evaluate.statistics import (
    bootstrap_ci,
    mover_interval,
    two_group_permutation_test,
    wilson_ci,
)


@dataclass
class _EvalSet:
    name: str
    ids: list[str]
    previews: list[str]
    lengths: np.ndarray
    ks: np.ndarray
    hashes: list[np.ndarray]  # per item: hash of the k-gram starting at each position
    keys: np.ndarray  # sorted unique hashes of all items
    hit_hash: list[np.ndarray] = field(default_factory=list)
    hit_row: list[np.ndarray] = field(default_factory=list)
    n_hits: int = 0


class ContaminationScanner:
    """Eval n-gram indexes (one per eval set, one shared vocabulary) and streamed lookups."""

    def __init__(self, evals: Sequence[tuple[str, Sequence[Record]]], cfg: ContaminationConfig):
        self.cfg = cfg
        self.vocab: dict[str, int] = {}
        self.sets = [self._index(name, records) for name, records in evals]
        self.sizes = sorted({int(k) for s in self.sets for k in s.ks if k > 0})

    def _ids(self, words: list[str], grow: bool) -> np.ndarray:
        if grow:
            return np.fromiter(
                (self.vocab.setdefault(w, len(self.vocab) + 1) for w in words),
                dtype=np.uint64,
                count=len(words),
            )
        get = self.vocab.get
        return np.fromiter((get(w, 0) for w in words), dtype=np.uint64, count=len(words))

    def _index(self, name: str, records: Sequence[Record]) -> _EvalSet:
        n = self.cfg.ngram
        lengths, ks, per_item = [], [], []
        for rec in records:
            ids = self._ids(tokens(rec.text), grow=True)
            k = min(n, ids.size) if ids.size >= self.cfg.min_tokens else 0
            lengths.append(ids.size)
            ks.append(k)
            if k:
                offsets = np.array([0, ids.size], dtype=np.int64)
                per_item.append(word_ngram_hashes(ids, offsets, k)[0])
            else:
                per_item.append(np.zeros(0, dtype=np.uint64))
        keys = np.unique(np.concatenate(per_item)) if per_item else np.zeros(0, np.uint64)
        return _EvalSet(
            name=name,
            ids=[r.id for r in records],
            previews=[preview(r.text) for r in records],
            lengths=np.asarray(lengths, dtype=np.int64),
            ks=np.asarray(ks, dtype=np.int64),
            hashes=per_item,
            keys=keys,
        )

    def scan(self, records: Sequence[Record], base_row: int) -> None:
        """Look up every n-gram of a chunk of training records (rows from ``base_row``)."""
        if not self.sizes or not records:
            return
        arrays = [self._ids(tokens(r.text), grow=False) for r in records]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([a.size for a in arrays], out=offsets[1:])
        ids = np.concatenate(arrays) if offsets[-1] else np.zeros(0, dtype=np.uint64)
        for k in self.sizes:
            hashes, doc = word_ngram_hashes(ids, offsets, k)
            if hashes.size == 0:
                continue
            for s in self.sets:
                hit = _member(hashes, s.keys)
                if hit.any():
                    s.hit_hash.append(hashes[hit])
                    s.hit_row.append(doc[hit] + base_row)
                    s.n_hits += int(hit.sum())
                    if s.n_hits > 4_000_000:
                        self._compact(s)

    def _compact(self, s: _EvalSet) -> None:
        """Keep at most max_sources training rows per matched n-gram."""
        h, r = _cap_sources(np.concatenate(s.hit_hash), np.concatenate(s.hit_row), self.cfg)
        s.hit_hash, s.hit_row, s.n_hits = [h], [r], h.size

    def sections(self, train_ids: Sequence[str]) -> list[ContaminationSection]:
        """One section per eval set."""
        return [self._section(s, train_ids) for s in self.sets]

    def _section(self, s: _EvalSet, train_ids: Sequence[str]) -> ContaminationSection:
        cfg = self.cfg
        if s.hit_hash:
            h, r = _cap_sources(np.concatenate(s.hit_hash), np.concatenate(s.hit_row), cfg)
        else:
            h, r = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        items: list[ContaminatedItem] = []
        involved: set[int] = set()
        for i in range(len(s.ids)):
            k = int(s.ks[i])
            if not k:
                continue
            matched = _member(s.hashes[i], h)
            if not matched.any():
                continue
            covered = np.zeros(int(s.lengths[i]), dtype=bool)
            for start in np.flatnonzero(matched):
                covered[start : start + k] = True
            lo, hi = (
                np.searchsorted(h, s.hashes[i][matched], side="left"),
                np.searchsorted(h, s.hashes[i][matched], side="right"),
            )
            rows = sorted({int(x) for a, b in zip(lo, hi, strict=True) for x in r[a:b]})
            coverage = float(covered.mean())
            if coverage >= cfg.contaminated_at:
                involved.update(rows)
            items.append(
                ContaminatedItem(
                    eval_id=s.ids[i],
                    coverage=round(coverage, 4),
                    n_tokens=int(s.lengths[i]),
                    ngram=k,
                    train_ids=[train_ids[x] for x in rows],
                    preview=s.previews[i],
                )
            )
        n_checked = int((s.ks > 0).sum())
        n_cont = sum(it.coverage >= cfg.contaminated_at for it in items)
        n_part = sum(cfg.clean_below <= it.coverage < cfg.contaminated_at for it in items)
        return ContaminationSection(
            eval_name=s.name,
            ngram=cfg.ngram,
            n_items=len(s.ids),
            n_checked=n_checked,
            n_contaminated=n_cont,
            n_partial=n_part,
            n_any=len(items),
            share_contaminated=n_cont / n_checked if n_checked else 0.0,
            share_any=len(items) / n_checked if n_checked else 0.0,
            items=sorted(items, key=lambda it: -it.coverage),
            train_ids=[train_ids[x] for x in sorted(involved)],
        )

    def coverage_of(self, section: ContaminationSection) -> dict[str, float]:
        """Coverage per checked eval item id (0 for items without any match)."""
        s = next(x for x in self.sets if x.name == section.eval_name)
        out = {s.ids[i]: 0.0 for i in range(len(s.ids)) if s.ks[i] > 0}
        out.update({it.eval_id: it.coverage for it in section.items})
        return out


def _member(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask of ``values`` found in the sorted array ``sorted_keys``."""
    if sorted_keys.size == 0 or values.size == 0:
        return np.zeros(values.size, dtype=bool)
    pos = np.searchsorted(sorted_keys, values)
    pos[pos == sorted_keys.size] = 0
    return sorted_keys[pos] == values


def _cap_sources(
    h: np.ndarray, r: np.ndarray, cfg: ContaminationConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Unique (hash, row) pairs sorted by hash then row, at most max_sources rows per hash."""
    order = np.lexsort((r, h))
    h, r = h[order], r[order]
    first = np.r_[True, (h[1:] != h[:-1]) | (r[1:] != r[:-1])]
    h, r = h[first], r[first]
    starts = np.r_[0, np.flatnonzero(h[1:] != h[:-1]) + 1]
    rank = np.arange(h.size) - np.repeat(starts, np.diff(np.r_[starts, h.size]))
    keep = rank < cfg.max_sources
    return h[keep], r[keep]


def score_split(
    coverage: dict[str, float],
    values: dict[str, float],
    cfg: ContaminationConfig,
    *,
    run_id: str,
    task: str,
    metric: str,
    seed: int = 0,
) -> ScoreSplit:
    """The metric on clean, partial and contaminated items; contaminated minus clean with a
    two-group permutation p-value (valid with five contaminated items, where bootstrapping
    each group alone rejected a true null 19-20% of the time) and a MOVER interval from each
    group's own interval: Newcombe's (Wilson) for 0/1 scores, BCa otherwise.

    The interval is withheld (``too_few`` with a note) when a group has fewer than MIN_GROUP
    items (MIN_BOOTSTRAP_ITEMS for scores that are not 0/1): with three contaminated items the
    Wilson-based interval covered 85-91%.
    """
    groups = _groups(coverage, values, cfg)
    split = ScoreSplit(
        run_id=run_id,
        task=task,
        metric=metric,
        n_matched=sum(len(v) for v in groups.values()),
        **{name: _group_score(v, seed) for name, v in groups.items()},
    )
    clean, dirty = np.asarray(groups["clean"]), np.asarray(groups["contaminated"])
    if clean.size and dirty.size:
        split.diff = float(dirty.mean() - clean.mean())
        split.p_value = two_group_permutation_test(clean, dirty, seed=seed)
        split.note = _too_few_note(clean, dirty)
        split.too_few = split.note is not None
        if not split.too_few:
            split.ci_low, split.ci_high = _difference_interval(clean, dirty, seed)
    return split


#: Fewest items in each group for an interval of a difference of 0/1 scores.
MIN_GROUP = 5
#: Fewest items in a group for a bootstrap interval of a score that is not 0/1 (as for the
#: evaluation metrics: five skewed items covered 77%).
MIN_BOOTSTRAP_ITEMS = 10


def _groups(
    coverage: dict[str, float], values: dict[str, float], cfg: ContaminationConfig
) -> dict[str, list[float]]:
    """The scores of the clean, partial and contaminated items (unmatched or NaN left out)."""
    groups: dict[str, list[float]] = {"clean": [], "partial": [], "contaminated": []}
    for item_id, value in values.items():
        cov = coverage.get(item_id)
        if cov is None or not np.isfinite(value):
            continue
        if cov >= cfg.contaminated_at:
            groups["contaminated"].append(value)
        elif cov < cfg.clean_below:
            groups["clean"].append(value)
        else:
            groups["partial"].append(value)
    return groups


def _binary(values: np.ndarray) -> bool:
    """Whether every score is 0 or 1."""
    return bool(np.all((values == 0) | (values == 1)))


def _too_few_note(clean: np.ndarray, dirty: np.ndarray) -> str | None:
    """Why the difference gets no interval, or None when both groups are large enough."""
    least = MIN_GROUP if _binary(clean) and _binary(dirty) else MIN_BOOTSTRAP_ITEMS
    smallest = min(clean.size, dirty.size)
    if smallest >= least:
        return None
    return f"{smallest} item(s) in a group: an interval of the difference needs {least} each"


def _difference_interval(clean: np.ndarray, dirty: np.ndarray, seed: int) -> tuple[float, float]:
    """contaminated - clean: MOVER over each group's interval (Wilson for 0/1 scores, BCa
    otherwise), so a group of five all-correct items still has an honest width."""
    ends = [_group_interval(g, seed) for g in (dirty, clean)]
    estimates = [float(dirty.mean()), float(clean.mean())]
    lows, highs = [e[0] for e in ends], [e[1] for e in ends]
    return mover_interval(estimates, lows, highs, [1.0, -1.0])


def _group_interval(values: np.ndarray, seed: int) -> tuple[float, float]:
    """One group's 95% interval: Wilson for 0/1 values, BCa bootstrap otherwise."""
    if _binary(values):
        return wilson_ci(int(values.sum()), values.size)
    return bootstrap_ci(values, n_boot=2000, seed=seed)


def _group_score(values: list[float], seed: int) -> GroupScore:
    """The metric on one group with its interval: Wilson for 0/1 scores (any size), BCa for
    others from MIN_BOOTSTRAP_ITEMS items with some spread; else flagged too_few."""
    if not values:
        return GroupScore(n=0, value=None)
    arr = np.asarray(values, dtype=float)
    score = GroupScore(n=int(arr.size), value=float(arr.mean()))
    if _binary(arr):
        score.ci_low, score.ci_high = wilson_ci(int(arr.sum()), arr.size)
        score.method = "wilson"
    elif arr.size < MIN_BOOTSTRAP_ITEMS or np.ptp(arr) == 0:
        score.too_few = True
        score.note = (
            f"{arr.size} item(s): a bootstrap interval needs {MIN_BOOTSTRAP_ITEMS} with spread"
        )
    else:
        score.ci_low, score.ci_high = bootstrap_ci(arr, n_boot=2000, seed=seed)
        score.method = "bca"
    return score
