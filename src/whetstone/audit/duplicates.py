"""Exact duplicates, near duplicates (MinHash LSH, every candidate verified) and label conflicts.

Near duplicates are pairs whose sets of character n-grams (of the normalized text) have a
Jaccard similarity of at least the threshold. MinHash signatures are datasketch's (its
permutations and its ``affine32`` scheme, applied to all shingles of a chunk at once: the tests
check them against ``datasketch.MinHash`` bit for bit); the bands and rows are datasketch's
optimal LSH parameters for the threshold, and texts sharing a band are candidates, as in
``datasketch.MinHashLSH``. Only band hashes are kept per record, so a pass over a large file
holds ``bands * 8`` bytes per record; a second pass reads the candidates' texts back and keeps
a pair only if its true Jaccard similarity reaches the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from whetstone.audit.config import DuplicatesConfig
from whetstone.audit.loading import Record
from whetstone.audit.schema import DuplicateGroup, DuplicateSection, LSHInfo, NearPair
from whetstone.audit.text import char_shingle_hashes, normalize, preview, text_hash
from whetstone.errors import missing_extra

#: Shingles per block of the signature computation: 8192 x 128 permutations x 4 bytes stay in
#: cache, which is about twice as fast as large blocks.
SHINGLE_BLOCK = 1 << 13
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35))


def lsh_params(threshold: float, num_perm: int, recall_weight: float = 0.9) -> tuple[int, int]:
    """datasketch's (bands, rows) minimizing the weighted false positive and false negative
    probability mass around ``threshold`` (misses weighted by ``recall_weight``)."""
    try:
        from datasketch.lsh import _optimal_param
    except ImportError as err:
        raise missing_extra("datasketch", "diagnose") from err
    bands, rows = _optimal_param(threshold, num_perm, 1.0 - recall_weight, recall_weight)
    return int(bands), int(rows)


def shingle_hash32(h64: np.ndarray) -> np.ndarray:
    """The 32-bit input hash of a shingle: the two halves of its 64-bit hash xor-ed."""
    return ((h64 ^ (h64 >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """The MurmurHash3 finalizer datasketch applies before its affine32 permutations."""
    s1, m1, s2, m2 = _FMIX32
    with np.errstate(over="ignore"):
        h = h ^ (h >> s1)
        h = h * m1
        h = h ^ (h >> s2)
        h = h * m2
        return h ^ (h >> s1)


class MinHasher:
    """datasketch-compatible MinHash signatures of many texts at once."""

    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5) -> None:
        try:
            from datasketch import MinHash
        except ImportError as err:
            raise missing_extra("datasketch", "diagnose") from err
        perms = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a = np.asarray(perms[0], dtype=np.uint32)
        self.b = np.asarray(perms[1], dtype=np.uint32)
        self.num_perm = num_perm
        self.ngram = ngram

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """uint32 signatures ``[len(texts), num_perm]`` of the (already normalized) texts."""
        hashes, offsets = char_shingle_hashes(texts, self.ngram)
        return self.signatures_of_hashes(shingle_hash32(hashes), offsets)

    def signatures_of_hashes(self, h32: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures from 32-bit shingle hashes grouped by ``offsets`` (no empty groups)."""
        n = offsets.size - 1
        sig = np.full((n, self.num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
        mixed = _fmix32(h32)
        doc_of = np.repeat(np.arange(n), np.diff(offsets))
        for lo in range(0, mixed.size, SHINGLE_BLOCK):
            block = mixed[lo : lo + SHINGLE_BLOCK]
            # permutations x shingles: the min over each record's shingles runs along rows
            with np.errstate(over="ignore"):
                phv = self.a[:, None] * block[None, :]
                phv += self.b[:, None]
            docs = doc_of[lo : lo + SHINGLE_BLOCK]
            starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            mins = np.minimum.reduceat(phv, starts, axis=1).T
            rows = docs[starts]
            sig[rows] = np.minimum(sig[rows], mins)
        return sig


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 per (record, band): equal hashes mean equal signature slices."""
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(bands):
            h = np.full(sig.shape[0], np.uint64(i + 1), dtype=np.uint64)
            for j in range(i * rows, (i + 1) * rows):
                h = (h ^ sig[:, j].astype(np.uint64)) * np.uint64(0x100000001B3)
                h ^= h >> np.uint64(29)
            out[:, i] = h
    return out


def candidate_pairs(bands: np.ndarray, max_bucket: int = 100) -> np.ndarray:
    """Pairs (i < j) of rows sharing at least one band hash, as an int64 array ``[m, 2]``.

    A bucket with more than ``max_bucket`` rows is paired with its first row only.
    """
    found: list[np.ndarray] = []
    for col in range(bands.shape[1]):
        order = np.argsort(bands[:, col], kind="stable")
        values = bands[order, col]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        sizes = np.diff(np.r_[starts, values.size])
        for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
            found.append(_bucket_pairs(np.sort(order[start : start + size]), max_bucket))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return np.unique(pairs, axis=0)


def _bucket_pairs(group: np.ndarray, max_bucket: int) -> np.ndarray:
    if group.size > max_bucket:
        return np.stack([np.full(group.size - 1, group[0]), group[1:]], axis=1)
    i, j = np.triu_indices(group.size, k=1)
    return np.stack([group[i], group[j]], axis=1)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of unique values."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


@dataclass
class DuplicateScanner:
    """Streaming state: exact hashes and LSH band hashes of every record seen."""

    config: DuplicatesConfig
    hasher: MinHasher = field(init=False)
    bands_rows: tuple[int, int] = field(init=False)
    ids: list[str] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    exact: list[int] = field(default_factory=list)
    band_blocks: list[np.ndarray] = field(default_factory=list)
    lsh_rows: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hasher = MinHasher(self.config.num_perm, self.config.seed, self.config.ngram)
        cfg = self.config
        self.bands_rows = lsh_params(cfg.threshold, cfg.num_perm, cfg.recall_weight)

    def add(self, records: Sequence[Record]) -> None:
        """Hash a chunk of records (empty texts take no part)."""
        base = len(self.ids)
        texts: list[str] = []
        lsh_index: list[int] = []
        for i, rec in enumerate(records):
            norm = normalize(rec.text)
            self.ids.append(rec.id)
            self.labels.append(rec.label)
            self.exact.append(text_hash(norm) if norm else 0)
            if len(norm) >= self.config.min_chars:
                texts.append(norm)
                lsh_index.append(base + i)
        if texts:
            sig = self.hasher.signatures(texts)
            self.band_blocks.append(band_hashes(sig, *self.bands_rows))
            self.lsh_rows.append(np.asarray(lsh_index, dtype=np.int64))

    def exact_groups(self) -> list[np.ndarray]:
        """Row indices of each group of 2+ records with equal normalized text (in row order)."""
        hashes = np.asarray(self.exact, dtype=np.int64)
        nonempty = np.flatnonzero(hashes != 0)
        if nonempty.size == 0:
            return []
        values = hashes[nonempty]
        order = np.argsort(values, kind="stable")
        cuts = np.flatnonzero(values[order][1:] != values[order][:-1]) + 1
        groups = [nonempty[g] for g in np.split(order, cuts) if g.size > 1]
        return sorted((np.sort(g) for g in groups), key=lambda g: int(g[0]))

    def candidates(self, exclude: set[int]) -> np.ndarray:
        """Candidate row pairs from LSH, leaving out rows in ``exclude`` (exact copies)."""
        if not self.band_blocks:
            return np.zeros((0, 2), dtype=np.int64)
        rows = np.concatenate(self.lsh_rows)
        bands = np.concatenate(self.band_blocks)
        keep = np.array([r not in exclude for r in rows.tolist()], dtype=bool)
        rows, bands = rows[keep], bands[keep]
        local = candidate_pairs(bands, self.config.max_bucket)
        return rows[local] if local.size else local


def verify_pairs(
    pairs: np.ndarray, shingles: dict[int, np.ndarray], threshold: float
) -> list[tuple[int, int, float]]:
    """The candidate pairs whose true Jaccard similarity reaches ``threshold``."""
    out: list[tuple[int, int, float]] = []
    for i, j in pairs.tolist():
        sim = jaccard(shingles[i], shingles[j])
        if sim >= threshold:
            out.append((i, j, sim))
    return out


def reread_rows(
    chunks: Iterable[Sequence[Record]], wanted: set[int], preview_rows: set[int], ngram: int
) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Sorted unique 64-bit shingle hashes of the wanted rows (by position in the stream), and
    previews of the rows in ``preview_rows``."""
    shingles: dict[int, np.ndarray] = {}
    previews: dict[int, str] = {}
    position = 0
    for records in chunks:
        picked = [(position + i, r) for i, r in enumerate(records) if position + i in wanted]
        previews.update(
            (position + i, preview(r.text))
            for i, r in enumerate(records)
            if position + i in preview_rows
        )
        position += len(records)
        if not picked:
            continue
        hashes, offsets = char_shingle_hashes([normalize(r.text) for _p, r in picked], ngram)
        for k, (pos, _r) in enumerate(picked):
            shingles[pos] = np.unique(hashes[offsets[k] : offsets[k + 1]])
    return shingles, previews


def build_section(
    scanner: DuplicateScanner, reread: Callable[[], Iterable[Sequence[Record]]]
) -> DuplicateSection:
    """Exact groups, verified near pairs and groups, conflicts and the rows dedup would drop.

    ``reread`` streams the records again (in the same order) for verification and previews.
    """
    cfg = scanner.config
    groups = scanner.exact_groups()
    extra = {int(r) for g in groups for r in g[1:]}
    pairs = scanner.candidates(extra)
    wanted = set(pairs.ravel().tolist())
    preview_rows = wanted | {int(g[0]) for g in groups}
    shingles: dict[int, np.ndarray] = {}
    previews: dict[int, str] = {}
    if preview_rows:
        shingles, previews = reread_rows(reread(), wanted, preview_rows, cfg.ngram)
    verified = verify_pairs(pairs, shingles, cfg.threshold)
    exact = [_group("exact", g.tolist(), scanner, previews) for g in groups]
    near = _near_groups(verified, scanner, previews)
    conflicts = [g for g in exact if len({lab for lab in g.labels if lab is not None}) > 1]
    conflicts += [
        _group("near", [i, j], scanner, previews, sim)
        for i, j, sim in verified
        if scanner.labels[i] != scanner.labels[j]
        and scanner.labels[i] is not None
        and scanner.labels[j] is not None
    ]
    bands, rows = scanner.bands_rows
    return DuplicateSection(
        n_exact_groups=len(exact),
        n_exact_extra=len(extra),
        n_near_pairs=len(verified),
        n_near_groups=len(near),
        exact_groups=exact,
        near_groups=near,
        near_pairs=[
            NearPair(a=scanner.ids[i], b=scanner.ids[j], jaccard=round(s, 4))
            for i, j, s in verified
        ],
        conflicts=conflicts,
        lsh=LSHInfo(
            threshold=cfg.threshold,
            num_perm=cfg.num_perm,
            bands=bands,
            rows=rows,
            ngram=cfg.ngram,
            candidates=int(pairs.shape[0]),
            verified=len(verified),
        ),
        drop_ids=[scanner.ids[r] for r in sorted(_drop_rows(groups, verified, scanner))],
    )


def _group(
    kind: str,
    rows: list[int],
    scanner: DuplicateScanner,
    previews: dict[int, str],
    min_jaccard: float = 1.0,
) -> DuplicateGroup:
    return DuplicateGroup(
        kind="exact" if kind == "exact" else "near",
        ids=[scanner.ids[r] for r in rows],
        labels=[scanner.labels[r] for r in rows],
        min_jaccard=round(min_jaccard, 4),
        preview=previews.get(rows[0], ""),
    )


def _near_groups(
    verified: list[tuple[int, int, float]], scanner: DuplicateScanner, previews: dict[int, str]
) -> list[DuplicateGroup]:
    """Connected components of the verified pairs, each with its lowest pair similarity."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _s in verified:
        parent[find(j)] = find(i)
    members: dict[int, list[int]] = {}
    for x in list(parent):
        members.setdefault(find(x), []).append(x)
    lowest: dict[int, float] = {}
    for i, _j, s in verified:
        root = find(i)
        lowest[root] = min(lowest.get(root, 1.0), s)
    groups = [sorted(m) for m in members.values()]
    groups.sort(key=lambda g: g[0])
    return [_group("near", g, scanner, previews, lowest[find(g[0])]) for g in groups]


def _drop_rows(
    groups: list[np.ndarray], verified: list[tuple[int, int, float]], scanner: DuplicateScanner
) -> set[int]:
    """Every exact copy after the first (conflicting groups: all but one of the majority label,
    or all when no label has a majority); near duplicates, in row order, whose label equals that
    of an earlier kept record they match."""
    drop: set[int] = set()
    for g in groups:
        rows = g.tolist()
        labels = [scanner.labels[r] for r in rows]
        if len(set(labels)) == 1:
            drop.update(rows[1:])
            continue
        counts = {lab: labels.count(lab) for lab in set(labels)}
        best = max(counts.values())
        winners = [lab for lab, c in counts.items() if c == best]
        if len(winners) > 1 or best * 2 <= len(rows):
            drop.update(rows)
        else:
            keep = next(r for r in rows if scanner.labels[r] == winners[0])
            drop.update(r for r in rows if r != keep)
    neighbours: dict[int, list[int]] = {}
    for i, j, _s in verified:
        if scanner.labels[i] == scanner.labels[j]:
            neighbours.setdefault(j, []).append(i)
    for j in sorted(neighbours):
        if j not in drop and any(i not in drop for i in neighbours[j]):
            drop.add(j)
    return drop
