"""Handing freed memory back to the system, where glibc would keep it resident."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
from typing import Any


@functools.cache
def _libc() -> Any:
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def trim() -> None:
    """Return free heap pages to the system (glibc's `malloc_trim`; a no-op elsewhere)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def collect() -> None:
    """Free unreachable Python objects, then `trim`: after loading a large tokenizer.json, whose
    0.5 GB of short-lived Python objects would otherwise stay resident under the weights."""
    gc.collect()
    trim()
