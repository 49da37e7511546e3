"""Float32 linear layers through oneDNN on a CPU, for inference.

PyTorch sends a float32 `F.linear` on a CPU to MKL's sgemm. oneDNN, which PyTorch also ships
(its compiler backend calls it through `torch.ops.mkldnn._linear_pointwise`), runs the same
float32 arithmetic with AVX-512 kernels on any x86 vendor; on a 2-core AMD EPYC it is 15-30%
faster on a decoder's shapes and the 262,144-word LM head. The op is private to PyTorch, so it
is used only after it has reproduced `F.linear` once, and never where gradients are needed.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F

MIN_ROWS = 16
"""Fewer rows than this (decoding a token at a time) stay with `F.linear`."""


@functools.cache
def available() -> bool:
    """Whether oneDNN's linear op exists here and reproduces `F.linear` in float32."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=gen) for s in ((MIN_ROWS, 40), (24, 40), (24,)))
    try:
        with torch.no_grad():
            got = op(x, w, b, "none", [], "")
    except (RuntimeError, TypeError, NotImplementedError):
        return False
    return bool(torch.allclose(got, F.linear(x, w, b), rtol=1e-5, atol=1e-5))


def _applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    return x.numel() >= MIN_ROWS * x.shape[-1] and weight.is_contiguous() and available()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Any:
    """`F.linear(x, weight, bias)`, through oneDNN where that applies."""
    if not _applies(x, weight):
        return F.linear(x, weight, bias)
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.ops.mkldnn._linear_pointwise(flat, weight, bias, "none", [], "")
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _forward(module: torch.nn.Linear, x: torch.Tensor) -> Any:
    return linear(x, module.weight, module.bias)


def install(model: torch.nn.Module) -> int:
    """Route a model's plain `nn.Linear` layers through `linear`; returns how many.

    Subclasses (adapters, quantized layers) keep their own forward.
    """
    if not available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = functools.partial(_forward, module)  # type: ignore[method-assign]
            count += 1
    return count
