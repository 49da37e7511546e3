"""Weak slices: groups of items whose failure rate is higher than the rest of the data.

Attributes come from the data's own columns and from what whetstone derives (length bins,
topic clusters, keyword presence, question form, gold label, answer position). Every value of
every attribute, and every conjunction of two values of different attributes, that holds at
least ``min_size`` items is a slice. Each slice is tested against the rest with a one-sided
Fisher's exact test (hypergeometric tail), and the p-values of all slices tested are adjusted
together with Benjamini-Hochberg, so the reported slices keep the false discovery rate.

Keywords are chosen by document frequency alone, never by their failure rate, so choosing them
does not bias the tests.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from whetstone.diagnose.categories import pick_examples, share, share_over, unit_of
from whetstone.diagnose.detectors import words
from whetstone.diagnose.schema import Observation, Share, SliceResult, SliceSearch
from whetstone.evaluate.statistics import benjamini_hochberg

__all__ = [
    "AttributeTable",
    "Condition",
    "SliceGroup",
    "cohen_h",
    "derive_attributes",
    "design_effect",
    "find_slices",
    "find_slices_grouped",
    "fisher_greater",
    "item_codes",
    "question_form",
    "rao_scott_fisher",
]

MAX_VALUES = 30  # a categorical column with more distinct values is not sliced on
EXPLAINED = 0.8  # share of a slice's excess failures a conjunction must hold to go first
_AUX = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "has",
        "have",
        "had",
        "am",
        "isn't",
        "aren't",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "won't",
    ]
)
_WH = ("what", "which", "who", "whom", "whose", "when", "where", "why", "how")


@dataclass(frozen=True)
class Condition:
    """attribute = value, as tested."""

    attribute: str
    value: str

    def describe(self) -> str:
        """How a report shows it."""
        if self.attribute.startswith("mentions "):
            return self.attribute
        return f"{self.attribute} = {self.value}"


@dataclass
class AttributeTable:
    """Which observations satisfy which condition (a boolean matrix, one column per condition)."""

    conditions: list[Condition]
    matrix: np.ndarray  # [n_observations, n_conditions] bool
    values: dict[str, list[str]] = field(default_factory=dict)


def question_form(text: str) -> str:
    """The form of the item's question: what, which, how many/much, yes/no, ... or none."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if s.strip()]
    asked = [s for s in sentences if "?" in s]
    sentence = asked[-1] if asked else (sentences[0] if sentences else "")
    tokens = words(re.sub(r"^\s*[A-Za-z]+:\s+", "", sentence))
    if not tokens:
        return "not a question"
    first = tokens[0]
    if first == "how" and len(tokens) > 1 and tokens[1] in ("many", "much"):
        return "how many/much"
    if first in _WH:
        return first
    if not asked:
        return "not a question"
    return "yes/no" if first in _AUX else "other question"


def _bins(values: np.ndarray, unit: str = "") -> list[str | None]:
    """Quartile bins of numeric values as labels (missing values stay None)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [None] * len(values)
    edges = np.unique(np.quantile(finite, [0.25, 0.5, 0.75]))
    integer = bool(np.all(finite == np.round(finite)))

    def num(x: float) -> str:
        return f"{int(x)}" if integer else f"{x:.3g}"

    labels = [f"≤ {num(edges[0])}{unit}"]
    for lo, hi in itertools.pairwise(edges):
        start = num(lo + 1) if integer else num(lo)
        labels.append(f"{start}–{num(hi)}{unit}" if integer else f"({start}, {num(hi)}]{unit}")
    labels.append(f"> {num(edges[-1])}{unit}")
    out: list[str | None] = []
    for v in values:
        out.append(None if not np.isfinite(v) else labels[int(np.searchsorted(edges, v))])
    return out


def _column_attributes(observations: Sequence[Observation]) -> dict[str, list[str | None]]:
    """The data's own columns usable for slicing: few categories, numbers (binned) or booleans."""
    names: list[str] = []
    for o in observations:
        names.extend(k for k in o.columns if k not in names)
    found: dict[str, list[str | None]] = {}
    for name in names:
        raw = [o.columns.get(name) for o in observations]
        present = [v for v in raw if v is not None and v != ""]
        if not present or any(isinstance(v, list | dict | tuple) for v in present):
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
        distinct = set(map(str, present))
        if numeric and len(distinct) > 10:
            arr = np.array([float(v) if isinstance(v, int | float) else math.nan for v in raw])
            found[name] = _bins(arr)
        elif 2 <= len(distinct) <= MAX_VALUES:
            found[name] = [None if v is None or v == "" else str(v) for v in raw]
    return found


def _keywords(texts: Sequence[str], min_size: int, top: int) -> list[str]:
    """The ``top`` most frequent content words by document frequency (between min_size and
    half of the items)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    df: Counter[str] = Counter()
    for t in texts:
        df.update({w for w in words(t) if len(w) >= 3 and w.isalpha()} - ENGLISH_STOP_WORDS)
    limit = len(texts) / 2
    return [w for w, c in df.most_common() if min_size <= c <= limit][:top]


def derive_attributes(
    observations: Sequence[Observation],
    topics: np.ndarray | None = None,
    topic_names: Sequence[str] | None = None,
    *,
    min_size: int = 20,
    keywords: int = 30,
) -> AttributeTable:
    """Every attribute's value per observation, and the conditions that hold ``min_size`` items.

    ``topics`` (an int per observation) with ``topic_names`` adds topic clusters.
    """
    n = len(observations)
    attrs: dict[str, list[str | None]] = {}
    tasks = {o.task for o in observations}
    several = len(tasks) > 1

    def scoped(o: Observation, value: str) -> str:
        return f"{o.task}: {value}" if several else value

    if several:
        attrs["task"] = [o.task for o in observations]
    texts = [o.text or o.prompt for o in observations]
    attrs["length"] = _bins(np.array([len(words(t)) for t in texts], dtype=float), " words")
    refs = [o.reference for o in observations]
    if any(o.kind == "generation" for o in observations):
        attrs["reference length"] = _bins(
            np.array([len(words(r)) if r else math.nan for r in refs], dtype=float), " words"
        )
    attrs["question form"] = [question_form(t) for t in texts]
    attrs["has a number"] = ["yes" if re.search(r"\d", t) else "no" for t in texts]
    labelled = [o for o in observations if o.gold_label is not None and o.kind == "classification"]
    if labelled:
        attrs["label"] = [
            scoped(o, o.gold_label)
            if o.gold_label is not None and o.kind == "classification"
            else None
            for o in observations
        ]
    if any(o.kind == "multiple_choice" for o in observations):
        attrs["answer position"] = [
            scoped(o, o.gold_label) if o.kind == "multiple_choice" and o.gold_label else None
            for o in observations
        ]
    if topics is not None:
        names = list(topic_names or [])
        attrs["topic"] = [names[t] if t < len(names) else f"topic {t}" for t in topics]
    for name, values in _column_attributes(observations).items():
        attrs[name if name not in attrs else f"column {name}"] = values
    for word in _keywords(texts, min_size, keywords):
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        attrs[f"mentions '{word}'"] = ["yes" if pattern.search(t) else None for t in texts]

    conditions: list[Condition] = []
    columns: list[np.ndarray] = []
    seen: dict[str, list[str]] = {}
    for attr, per_obs in attrs.items():
        counts = Counter(v for v in per_obs if v is not None)
        seen[attr] = sorted(counts)
        for value, count in sorted(counts.items()):
            if min_size <= count <= n - min_size:
                conditions.append(Condition(attr, value))
                columns.append(np.array([v == value for v in per_obs], dtype=bool))
    matrix = np.stack(columns, axis=1) if columns else np.zeros((n, 0), dtype=bool)
    return AttributeTable(conditions, matrix, seen)


def fisher_greater(k: Any, n: Any, failures: Any, total: Any) -> np.ndarray:
    """One-sided Fisher's exact test p-values: is a slice of ``n`` items with ``k`` failures
    worse than the rest, among ``total`` items with ``failures`` failures?

    Equal to scipy.stats.fisher_exact(..., alternative="greater") on the 2x2 table, computed
    for many slices at once as the hypergeometric upper tail P(X >= k).
    """
    k_arr = np.asarray(k)
    return np.asarray(
        sps.hypergeom.sf(k_arr - 1, np.asarray(total), np.asarray(failures), np.asarray(n)),
        dtype=float,
    )


def cohen_h(p1: Any, p2: Any) -> np.ndarray:
    """Cohen's h effect size between two proportions (0.2 small, 0.5 medium, 0.8 large)."""
    a = np.arcsin(np.sqrt(np.asarray(p1, dtype=float)))
    b = np.arcsin(np.sqrt(np.asarray(p2, dtype=float)))
    return np.asarray(2 * a - 2 * b, dtype=float)


def item_codes(observations: Sequence[Observation]) -> np.ndarray | None:
    """An integer per observation naming its item (task and item id), or None when every
    item is observed once (the observations are then independent)."""
    keys = [unit_of(o) for o in observations]
    codes = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    if len(codes) == len(keys):
        return None
    return np.array([codes[k] for k in keys], dtype=np.int64)


def design_effect(member: np.ndarray, failed: np.ndarray, units: np.ndarray) -> float:
    """Rao-Scott design effect of a slice-vs-rest difference in failure rate, items as units.

    The cluster-robust variance of the difference under the null (residuals from the pooled
    rate), over the binomial variance that Fisher's test assumes; at least 1. Judgments of
    one item correlate, and Fisher's test on them rejected 8-17% of true nulls at 0.05.
    """
    n1 = int(member.sum())
    n0 = member.size - n1
    rate = float(failed.mean())
    if n1 == 0 or n0 == 0 or rate in (0.0, 1.0):
        return 1.0
    weights = np.where(member, 1.0 / n1, -1.0 / n0) * (failed - rate)
    per_unit = np.bincount(units, weights=weights)
    g = per_unit.size
    if g < 2:
        return 1.0
    robust = g / (g - 1) * float(per_unit @ per_unit)
    return max(1.0, robust / (rate * (1.0 - rate) * (1.0 / n1 + 1.0 / n0)))


def rao_scott_fisher(k: int, n: int, failures: int, total: int, deff: float) -> float:
    """One-sided Fisher's exact p-value on the counts divided by the design effect (Rao and
    Scott 1992: effective counts of clustered binary data), rounded to whole items."""
    if deff <= 1.0:
        return float(fisher_greater(k, n, failures, total))
    big = int(np.floor(total / deff + 0.5))
    size = min(max(int(np.floor(n / deff + 0.5)), 1), max(big - 1, 1))
    bad = min(int(np.floor(failures / deff + 0.5)), big)
    hits = int(np.floor(k / deff + 0.5))
    hits = min(max(hits, size + bad - big, 0), size, bad)
    return float(fisher_greater(hits, size, bad, big))


@dataclass
class SliceGroup:
    """Observations searched together (one task): slices are compared with the rest of it."""

    table: AttributeTable
    failed: np.ndarray
    observations: Sequence[Observation] | None = None
    scope: str | None = None  # shown before the slice's description when there are several
    units: np.ndarray | None = None
    """Item code of each observation when items repeat (runs, judges); None: independent.
    Taken from ``observations`` (their task and item id) when not given."""

    def __post_init__(self) -> None:
        if self.units is None and self.observations is not None:
            self.units = item_codes(self.observations)


@dataclass
class _Tested:
    group: int
    conds: tuple[int, ...]
    size: int
    failures: int


def _members(table: AttributeTable, conds: tuple[int, ...]) -> np.ndarray:
    """Which observations are in the slice of these conditions."""
    return np.logical_and.reduce([table.matrix[:, c] for c in conds])


def _adjusted(groups: Sequence[SliceGroup], tested: list[_Tested], p: np.ndarray) -> np.ndarray:
    """Each slice's design effect (1 where observations are independent), and ``p`` made
    Rao-Scott where it is above 1."""
    deff = np.ones(len(tested))
    for i, t in enumerate(tested):
        group = groups[t.group]
        if group.units is None:
            continue
        deff[i] = design_effect(_members(group.table, t.conds), group.failed, group.units)
        if deff[i] > 1.0:
            size, fails = int(group.failed.size), int(group.failed.sum())
            p[i] = rao_scott_fisher(t.failures, t.size, fails, size, float(deff[i]))
    return deff


def _candidates(
    g: int, table: AttributeTable, failed: np.ndarray, min_size: int, pairs: bool
) -> list[_Tested]:
    """Singles and two-way conjunctions of different attributes holding >= min_size items."""
    m = table.matrix
    n_total = m.shape[0]
    sizes = m.sum(axis=0)
    fails = m[failed].sum(axis=0)
    tested = [_Tested(g, (j,), int(sizes[j]), int(fails[j])) for j in range(m.shape[1])]
    if pairs and m.shape[1] > 1:
        mi = m.astype(np.int32)
        both = mi.T @ mi
        both_fail = mi[failed].T @ mi[failed]
        attrs = [c.attribute for c in table.conditions]
        for a in range(m.shape[1]):
            for b in range(a + 1, m.shape[1]):
                size = int(both[a, b])
                if attrs[a] == attrs[b] or not min_size <= size <= n_total - min_size:
                    continue
                if size in (sizes[a], sizes[b]):  # the same items as one of its parts
                    continue
                tested.append(_Tested(g, (a, b), size, int(both_fail[a, b])))
    return tested


def find_slices(
    table: AttributeTable,
    failed: Sequence[bool] | np.ndarray,
    observations: Sequence[Observation] | None = None,
    **options: Any,
) -> tuple[list[SliceResult], SliceSearch]:
    """Slices of one group of observations (see ``find_slices_grouped`` for the options)."""
    group = SliceGroup(table, np.asarray(failed, dtype=bool), observations)
    return find_slices_grouped([group], **options)


def find_slices_grouped(
    groups: Sequence[SliceGroup],
    *,
    min_size: int = 20,
    fdr: float = 0.05,
    pairs: bool = True,
    max_report: int = 25,
    examples: int = 3,
) -> tuple[list[SliceResult], SliceSearch]:
    """Test every slice of every group against the rest of its group; one BH adjustment over
    all of them; the significant ones ranked by excess failures.

    Excess failures (failures beyond what the rest's rate predicts for the slice's size) rank
    the slices by how much of the model's error they explain; a slice whose excess lies mostly
    (80%) within one of its significant conjunctions comes after it. A conjunction is reported
    only when it is credibly worse than both of its parts (the lower end of its Wilson interval
    above their error rates), and when fewer than five slices are significant the closest
    candidates are shown too, marked not significant. Every slice tested counts in the
    adjustment, shown or not.
    """
    tested: list[_Tested] = []
    totals: list[tuple[int, int]] = []
    attributes: dict[str, list[str]] = {}
    for g, group in enumerate(groups):
        total, n_fail = int(group.failed.size), int(group.failed.sum())
        totals.append((total, n_fail))
        prefix = f"{group.scope}: " if group.scope else ""
        attributes.update({prefix + k: v for k, v in group.table.values.items()})
        if 0 < n_fail < total:
            tested += _candidates(g, group.table, group.failed, min_size, pairs)
    search = SliceSearch(
        attributes=attributes,
        min_size=min_size,
        fdr=fdr,
        tested=len(tested),
        significant=0,
        clustered=any(g.units is not None for g in groups),
    )
    if not tested:
        return [], search
    size = np.array([t.size for t in tested])
    k = np.array([t.failures for t in tested])
    group_total = np.array([totals[t.group][0] for t in tested])
    group_fail = np.array([totals[t.group][1] for t in tested])
    p = fisher_greater(k, size, group_fail, group_total)
    deff = _adjusted(groups, tested, p)
    p_adj = benjamini_hochberg(p)
    rate = k / size
    rest_rate = (group_fail - k) / (group_total - size)
    excess = k - size * rest_rate
    significant = p_adj <= fdr
    search.significant = int(significant.sum())
    single = {(t.group, t.conds[0]): i for i, t in enumerate(tested) if len(t.conds) == 1}
    single_rate = {key: rate[i] for key, i in single.items()}

    # a slice whose excess failures lie (almost) all inside a significant conjunction of it is
    # shown after that more specific slice
    # a conjunction is worth reading only when credibly worse than both its parts (the lower
    # end of its Wilson interval above their error rates)
    def worth(i: int) -> bool:
        t = tested[i]
        if len(t.conds) == 1:
            return True
        parts = max(single_rate[(t.group, c)] for c in t.conds)
        return _error_rate(groups[t.group], t).ci_low > parts

    explained = np.zeros(len(tested), dtype=bool)
    for i, t in enumerate(tested):
        if len(t.conds) == 2 and significant[i] and worth(i):
            for c in t.conds:
                parent = single[(t.group, c)]
                if excess[i] >= EXPLAINED * excess[parent]:
                    explained[parent] = True
    order = np.lexsort((p, -excess, explained, ~significant))
    results: list[SliceResult] = []
    for i in order:
        t = tested[i]
        if len(results) >= max_report or (not significant[i] and search.significant >= 5):
            break
        if rate[i] <= rest_rate[i]:
            continue
        if not worth(int(i)):
            continue
        results.append(
            _slice_result(
                groups[t.group],
                t,
                rate[i],
                rest_rate[i],
                p[i],
                p_adj[i],
                bool(significant[i]),
                totals[t.group],
                examples,
                float(deff[i]),
            )
        )
        if not significant[i] and len(results) >= 10:
            break
    return results, search


def _error_rate(group: SliceGroup, t: _Tested) -> Share:
    """The slice's failure rate with its interval (clustered by item where items repeat)."""
    if group.units is None:
        return share(t.failures, t.size)
    inside = _members(group.table, t.conds)
    return share_over(list(group.failed[inside]), list(group.units[inside]))


def _slice_result(
    group: SliceGroup,
    t: _Tested,
    rate: float,
    rest_rate: float,
    p: float,
    p_adj: float,
    significant: bool,
    totals: tuple[int, int],
    k_examples: int,
    deff: float = 1.0,
) -> SliceResult:
    total, n_fail = totals
    table = group.table
    conds = [table.conditions[c] for c in t.conds]
    members = _members(table, t.conds)
    a, b = t.failures, t.size - t.failures
    c, d = n_fail - t.failures, (total - t.size) - (n_fail - t.failures)
    odds = (a * d) / (b * c) if b * c > 0 else None
    shown: list[Observation] = []
    if group.observations is not None:
        shown = [group.observations[int(i)] for i in np.flatnonzero(members & group.failed)]
    prefix = f"{group.scope}: " if group.scope else ""
    return SliceResult(
        description=prefix + " AND ".join(x.describe() for x in conds),
        conditions=[
            {
                "attribute": x.attribute,
                "value": x.value,
                **({"task": group.scope} if group.scope else {}),
            }
            for x in conds
        ],
        size=t.size,
        failures=t.failures,
        error_rate=_error_rate(group, t),
        rest_size=total - t.size,
        rest_error_rate=float(rest_rate),
        metric_value=float(rate),
        rest_value=float(rest_rate),
        effect_size=float(cohen_h(rate, rest_rate)),
        risk_difference=float(rate - rest_rate),
        odds_ratio=None if odds is None else float(odds),
        p_value=float(p),
        p_adjusted=float(p_adj),
        design_effect=deff,
        significant=significant,
        examples=pick_examples(shown, k_examples),
    )
