"""Representation and bias: how often demographic groups appear and what they go with.

A record mentions a group when one of the group's terms is among its word tokens. Associations
are normalized pointwise mutual information over records (as in Hugging Face's
data-measurements tool): nPMI(x, y) = log(p(x, y) / (p(x) p(y))) / -log p(x, y), from -1
(never together) through 0 (independent) to 1 (always together). Group-label associations are
tested with Fisher's exact test and Benjamini-Hochberg adjusted across all pairs.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from whetstone.audit.config import BiasConfig
from whetstone.audit.loading import Record
from whetstone.audit.schema import Association, BiasSection, GroupCount
from whetstone.audit.text import tokens
from whetstone.evaluate.statistics import benjamini_hochberg

TERMS_FILE = Path(__file__).with_name("terms.yaml")
#: Record ids kept per group for findings.
IDS_PER_GROUP = 1000
Group = tuple[str, str]


@functools.cache
def default_terms() -> dict[str, dict[str, list[str]]]:
    """The term lists shipped with whetstone (terms.yaml)."""
    data: dict[str, dict[str, list[str]]] = yaml.safe_load(TERMS_FILE.read_text(encoding="utf-8"))
    return data


def npmi(joint: int, a: int, b: int, n: int) -> float:
    """Normalized PMI of two events seen together ``joint`` times, apart ``a`` and ``b`` times,
    in ``n`` records."""
    if joint == 0:
        return -1.0
    p_xy, p_x, p_y = joint / n, a / n, b / n
    if p_xy >= 1.0:
        return 1.0
    return math.log(p_xy / (p_x * p_y)) / -math.log(p_xy)


@dataclass
class BiasAccumulator:
    """Streaming counts of groups, labels, words and their co-occurrence."""

    config: BiasConfig
    terms: dict[str, dict[str, list[str]]] = field(init=False)
    lookup: dict[str, list[Group]] = field(init=False)
    n: int = 0
    group_docs: Counter[Group] = field(default_factory=Counter)
    label_docs: Counter[str] = field(default_factory=Counter)
    group_label: Counter[tuple[Group, str]] = field(default_factory=Counter)
    word_docs: Counter[str] = field(default_factory=Counter)
    group_word: dict[Group, Counter[str]] = field(default_factory=dict)
    group_ids: dict[Group, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.terms = self.config.terms if self.config.terms is not None else default_terms()
        self.lookup = {}
        for category, groups in self.terms.items():
            for group, words in groups.items():
                for word in words:
                    self.lookup.setdefault(word.lower(), []).append((category, group))

    def add(self, records: Sequence[Record]) -> None:
        """Count a chunk."""
        for rec in records:
            words = set(tokens(rec.text))
            if not words:
                continue
            self.n += 1
            self.word_docs.update(words)
            if rec.label is not None:
                self.label_docs[rec.label] += 1
            present = {g for w in words if w in self.lookup for g in self.lookup[w]}
            for g in present:
                self.group_docs[g] += 1
                if rec.label is not None:
                    self.group_label[(g, rec.label)] += 1
                self.group_word.setdefault(g, Counter()).update(words)
                ids = self.group_ids.setdefault(g, [])
                if len(ids) < IDS_PER_GROUP:
                    ids.append(rec.id)

    def section(self) -> BiasSection:
        """Group counts, label associations (tested) and the top word associations."""
        return BiasSection(
            n_records=self.n,
            categories=self.terms,
            groups=self._group_counts(),
            label_associations=self._label_associations(),
            word_associations=self._word_associations(),
        )

    def _group_counts(self) -> list[GroupCount]:
        out = []
        for category, groups in self.terms.items():
            total = sum(self.group_docs[(category, g)] for g in groups)
            for group in groups:
                c = self.group_docs[(category, group)]
                out.append(
                    GroupCount(
                        category=category,
                        group=group,
                        n_records=c,
                        share=round(c / self.n, 6) if self.n else 0.0,
                        share_in_category=round(c / total, 6) if total else 0.0,
                    )
                )
        return out

    def _label_associations(self) -> list[Association]:
        from scipy.stats import fisher_exact

        rows: list[Association] = []
        for g, n_g in sorted(self.group_docs.items()):
            if n_g < self.config.min_count:
                continue
            for label, n_l in sorted(self.label_docs.items()):
                joint = self.group_label[(g, label)]
                table = [[joint, n_g - joint], [n_l - joint, self.n - n_g - n_l + joint]]
                p = float(fisher_exact(table).pvalue)
                rows.append(
                    Association(
                        category=g[0],
                        group=g[1],
                        target=label,
                        npmi=round(npmi(joint, n_g, n_l, self.n), 6),
                        count=joint,
                        p_value=p,
                    )
                )
        if rows:
            q = benjamini_hochberg([r.p_value for r in rows])
            for row, qv in zip(rows, q, strict=True):
                row.q_value = float(qv)
        return rows

    def _word_associations(self) -> list[Association]:
        own = set(self.lookup)
        rows: list[Association] = []
        for g, words in sorted(self.group_word.items()):
            scored = [
                Association(
                    category=g[0],
                    group=g[1],
                    target=w,
                    npmi=round(npmi(c, self.group_docs[g], self.word_docs[w], self.n), 6),
                    count=c,
                )
                for w, c in words.items()
                if c >= self.config.min_word_count and w not in own
            ]
            scored.sort(key=lambda a: (-a.npmi, a.target))
            rows.extend(scored[: self.config.top_words])
        return rows
