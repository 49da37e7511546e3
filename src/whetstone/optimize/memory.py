"""Giving memory back between trials: garbage collection, accelerator caches, the C heap."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys


def release_memory() -> None:
    """Collect garbage, empty the CUDA/MPS caches and return freed heap pages to the system.

    Called after every trial and fine-tune, once the trainer and model are out of scope, so
    the next trial starts from the same footprint as the first.
    """
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
        mps = getattr(torch, "mps", None)
        if mps is not None and getattr(torch.backends, "mps", None) is not None:
            with contextlib.suppress(RuntimeError, AttributeError):
                if torch.backends.mps.is_available():
                    mps.empty_cache()
    _trim_heap()


def _trim_heap() -> None:
    """glibc keeps freed memory in its arenas; malloc_trim hands it back (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc; elsewhere the peak from getrusage)."""
    statm = "/proc/self/statm"
    if os.path.exists(statm):
        with open(statm, encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
