"""Attention that computes only the blocks a sliding window can see, for right-padded scoring.

transformers hands SDPA a full `[n, n]` mask for a sliding-window layer (Gemma 3: five layers in
six, window 512), so on a CPU every query meets every key and GQA keys are copied per head.
Inside `right_padded_scoring()` a full-sequence forward pass instead runs SDPA query block by
query block over the keys that block can reach: causal layers take `is_causal`, sliding layers
a band, keys shared across query heads. Right padding needs no mask: a real token never sees
the pads after it. Everywhere else (generation, key/value caches, left padding) the model's
own SDPA path runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F

NAME = "whetstone_banded"
QUERY_BLOCK = 128
"""Queries per SDPA call in a sliding layer: the band then wastes at most one block of keys."""

_RIGHT_PADDED: ContextVar[bool] = ContextVar("whetstone_right_padded", default=False)


@contextlib.contextmanager
def right_padded_scoring() -> Iterator[None]:
    """Within this block, forward passes without a cache take the banded path."""
    token = _RIGHT_PADDED.set(True)
    try:
        yield
    finally:
        _RIGHT_PADDED.reset(token)


def install(model: Any) -> bool:
    """Switch a transformers model that runs SDPA with sliding windows to the banded path."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    if not getattr(config, "sliding_window", None):
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(NAME, banded_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, _mask)
    model.set_attn_implementation(NAME)
    return True


def _mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    from transformers.masking_utils import sdpa_mask

    fresh = kwargs.get("q_offset", 0) == 0 and kwargs.get("q_length") == kwargs.get("kv_length")
    if _RIGHT_PADDED.get() and fresh and kwargs.get("attention_mask") is None:
        return None
    return sdpa_mask(*args, **kwargs)


def banded_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """An attention interface: banded inside `right_padded_scoring`, SDPA elsewhere."""
    n = query.shape[2]
    if not _RIGHT_PADDED.get() or attention_mask is not None or key.shape[2] != n or dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            sliding_window=sliding_window,
            **kwargs,
        )
    gqa = query.shape[1] != key.shape[1]
    if not sliding_window or n <= sliding_window:
        out = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, scale=scaling, enable_gqa=gqa
        )
    else:
        out = torch.empty_like(query)
        for lo in range(0, n, QUERY_BLOCK):
            hi = min(n, lo + QUERY_BLOCK)
            first = max(0, lo - sliding_window + 1)
            q = torch.arange(lo, hi, device=query.device)[:, None]
            k = torch.arange(first, hi, device=query.device)[None, :]
            band = (k <= q) & (q - k < sliding_window)
            out[:, :, lo:hi] = F.scaled_dot_product_attention(
                query[:, :, lo:hi],
                key[:, :, first:hi],
                value[:, :, first:hi],
                attn_mask=band,
                scale=scaling,
                enable_gqa=gqa,
            )
    return out.transpose(1, 2).contiguous(), None
