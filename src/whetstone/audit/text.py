"""Text normalization, word tokens and vectorized n-gram hashing shared by the checks.

Hashes are polynomial hashes in uint64 arithmetic (wrapping modulo 2**64) over Unicode code
points (character shingles) or word ids (word n-grams), computed for many texts at once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)
#: Odd 64-bit multiplier of the polynomial hashes.
BASE = np.uint64(0x100000001B3)
#: Distinguishes n-grams of different lengths (added as n * LENGTH_SALT before hashing).
LENGTH_SALT = np.uint64(0x9E3779B97F4A7C15)


def normalize(text: str) -> str:
    """NFKC, lower case, whitespace runs collapsed: the form duplicates are compared in."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters, digits and underscore)."""
    return WORD.findall(text.lower())


def text_hash(text: str) -> int:
    """A 64-bit content hash (blake2b) of a normalized text, as a signed int64."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def preview(text: str, n: int = 140) -> str:
    """The first ``n`` characters of a text on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def char_shingle_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every character n-gram of each text, and each text's start offset.

    Each text is padded at its end with n-1 NUL characters, so a text of L characters has L
    shingles ``(text + NUL * (n-1))[i:i+n]`` and texts shorter than n still have shingles.
    Returns ``(hashes, offsets)`` where text i owns ``hashes[offsets[i]:offsets[i+1]]``.
    """
    pad = np.zeros(n - 1, dtype=np.uint64)
    arrays: list[np.ndarray] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        codes = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        lengths[i] = codes.size
        arrays.append(codes)
        arrays.append(pad)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if not texts or offsets[-1] == 0:
        return np.zeros(0, dtype=np.uint64), offsets
    joined = np.concatenate(arrays)
    windows = _rolling(joined, n)  # windows starting at every position
    # the start of text i in `joined` is offsets[i] + i * (n - 1); keep its first L_i windows
    starts = offsets[:-1] + np.arange(len(texts), dtype=np.int64) * (n - 1)
    keep = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return windows[keep], offsets


def _rolling(values: np.ndarray, n: int, salt: bool = False) -> np.ndarray:
    """Polynomial hash of every length-n window of ``values`` (uint64, wrapping)."""
    m = values.size - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(m, np.uint64(n) * LENGTH_SALT if salt else np.uint64(0), dtype=np.uint64)
        for j in range(n):
            h = h * BASE + values[j : j + m]
        return _mix64(h)


def _mix64(h: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: spreads polynomial hashes over all 64 bits."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def word_ngram_hashes(
    ids: np.ndarray, offsets: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every k-token window that lies inside one document, and that document's index.

    ``ids`` holds the concatenated token ids of the documents (ids >= 1; 0 marks a token that
    cannot match), document d owning ``ids[offsets[d]:offsets[d+1]]``.
    """
    hashes = _rolling(ids, k, salt=True)
    if hashes.size == 0:
        return hashes, np.zeros(0, dtype=np.int64)
    lengths = np.diff(offsets)
    doc_of = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)  # document of a token
    doc = doc_of[: hashes.size]
    inside = np.arange(hashes.size, dtype=np.int64) + k <= offsets[doc + 1]
    return hashes[inside], doc[inside]


def ngram_hash_of(ids: Sequence[int]) -> int:
    """The hash ``word_ngram_hashes`` gives the token-id sequence ``ids`` (for lookups)."""
    arr = np.asarray(ids, dtype=np.uint64)
    return int(_rolling(arr, len(arr), salt=True)[0])
