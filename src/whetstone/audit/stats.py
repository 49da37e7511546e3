"""Size, length and vocabulary statistics, language mix, empty and malformed records.

Lengths and token counts are accumulated while the file streams by; the language of a seeded
sample of records is identified with langdetect.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from whetstone.audit.config import StatsConfig
from whetstone.audit.loading import Malformed, Record
from whetstone.audit.schema import Histogram, LengthStats, MalformedRecord, StatsSection
from whetstone.audit.text import tokens
from whetstone.errors import missing_extra

#: Texts shorter than this are too short for language identification.
LANGUAGE_MIN_CHARS = 20


def length_stats(values: Sequence[float] | np.ndarray) -> LengthStats | None:
    """Mean, median, 5th/95th percentiles, min and max (None for no values)."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return None
    p5, median, p95 = np.percentile(arr, [5, 50, 95])
    return LengthStats(
        mean=round(float(arr.mean()), 3),
        median=float(median),
        p5=float(p5),
        p95=float(p95),
        min=float(arr.min()),
        max=float(arr.max()),
    )


def log_histogram(values: np.ndarray, bins: int = 20) -> Histogram | None:
    """Counts over logarithmically spaced bins from 1 to the maximum (0 falls in the first)."""
    if values.size == 0:
        return None
    top = max(float(values.max()), 2.0)
    edges = np.unique(np.round(np.geomspace(1, top + 1, bins + 1)))
    counts, _ = np.histogram(np.maximum(values, 1), bins=edges)
    return Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])


@dataclass
class StatsAccumulator:
    """Streaming statistics of a file's records."""

    config: StatsConfig
    n_rows: int = 0
    chars: list[np.ndarray] = field(default_factory=list)
    n_tokens: list[np.ndarray] = field(default_factory=list)
    field_lengths: dict[str, list[int]] = field(default_factory=dict)
    vocab: Counter[str] = field(default_factory=Counter)
    empty_ids: list[str] = field(default_factory=list)
    malformed: list[MalformedRecord] = field(default_factory=list)
    long_ids: list[tuple[str, int]] = field(default_factory=list)

    def add(self, records: Sequence[Record], malformed: Sequence[Malformed]) -> None:
        """Count a chunk."""
        self.n_rows += len(records) + len(malformed)
        self.malformed.extend(
            MalformedRecord(id=m.id, line=m.line, error=m.error) for m in malformed
        )
        chars = np.fromiter((len(r.text) for r in records), dtype=np.int64, count=len(records))
        counts = np.zeros(len(records), dtype=np.int64)
        for i, rec in enumerate(records):
            words = tokens(rec.text)
            counts[i] = len(words)
            self.vocab.update(words)
            if not rec.text.strip():
                self.empty_ids.append(rec.id)
            if rec.response is not None:
                self.field_lengths.setdefault("prompt", []).append(len(rec.prompt or ""))
                self.field_lengths.setdefault("response", []).append(len(rec.response))
                if not rec.response.strip() and rec.text.strip():
                    self.empty_ids.append(rec.id)
            self.long_ids.append((rec.id, len(rec.text)))
        self.chars.append(chars)
        self.n_tokens.append(counts)
        self._trim_long()

    def _trim_long(self) -> None:
        """Keep only the longest records as outlier candidates (bounded memory)."""
        if len(self.long_ids) > 20000:
            self.long_ids = sorted(self.long_ids, key=lambda x: -x[1])[:2000]

    def section(
        self, sample: Sequence[Record], duplicate_ids: Sequence[str], seed: int = 0
    ) -> tuple[StatsSection, dict[str, list[str]]]:
        """The statistics with the language mix of ``sample``, and the sampled record ids per
        language."""
        chars = np.concatenate(self.chars) if self.chars else np.zeros(0, dtype=np.int64)
        toks = np.concatenate(self.n_tokens) if self.n_tokens else np.zeros(0, dtype=np.int64)
        total_tokens = int(toks.sum())
        shares, n_detected, by_language = detect_languages(
            sample, self.config.language_sample, seed
        )
        section = StatsSection(
            n_rows=self.n_rows,
            n_records=int(chars.size),
            n_empty=len(self.empty_ids),
            n_malformed=len(self.malformed),
            n_duplicate_ids=len(duplicate_ids),
            chars=length_stats(chars),
            tokens=length_stats(toks),
            token_histogram=log_histogram(toks),
            fields={k: s for k, v in self.field_lengths.items() if (s := length_stats(v))},
            vocabulary_size=len(self.vocab),
            type_token_ratio=round(len(self.vocab) / total_tokens, 5) if total_tokens else 0.0,
            top_tokens=self.vocab.most_common(25),
            languages=shares,
            language_sample=n_detected,
            empty_ids=self.empty_ids,
            malformed=self.malformed,
        )
        return section, by_language

    def long_outliers(self, median_chars: float) -> list[tuple[str, int]]:
        """Records much longer than the median (``long_factor``) and ``long_min_chars`` long."""
        limit = max(self.config.long_factor * median_chars, self.config.long_min_chars)
        return sorted((x for x in self.long_ids if x[1] > limit), key=lambda x: -x[1])


def detect_languages(
    records: Sequence[Record], limit: int, seed: int = 0
) -> tuple[dict[str, float], int, dict[str, list[str]]]:
    """Share of each language among up to ``limit`` records long enough to identify, and the
    ids of the records identified per language."""
    candidates = [r for r in records if len(r.text.strip()) >= LANGUAGE_MIN_CHARS]
    if not candidates or limit <= 0:
        return {}, 0, {}
    try:
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError as err:
        raise missing_extra("langdetect", "diagnose") from err
    DetectorFactory.seed = seed
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(candidates), size=min(limit, len(candidates)), replace=False)
    by_language: dict[str, list[str]] = {}
    for i in sorted(picked.tolist()):
        try:
            lang = detect(candidates[i].text)
        except LangDetectException:
            lang = "unknown"
        by_language.setdefault(lang, []).append(candidates[i].id)
    n = sum(len(v) for v in by_language.values())
    ordered = sorted(by_language.items(), key=lambda kv: -len(kv[1]))
    return {lang: round(len(ids) / n, 4) for lang, ids in ordered}, n, dict(ordered)
