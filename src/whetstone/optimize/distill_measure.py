"""What a smaller model buys: parameters, size on disk, CPU latency and throughput.

Latency is the median (and 90th percentile) wall time of one forward pass on one input of
`seq_len` tokens; throughput is inputs (classifiers) or tokens (causal LMs) per second over
batches of `throughput_batch`. Both run on CPU in inference mode after warm-up passes, with the
same real input for every model, so the ratios between models are what matters.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

WARMUP = 3


class SpeedStats(BaseModel):
    """CPU speed of one model on one input shape."""

    seq_len: int
    latency_ms: float
    latency_p90_ms: float
    throughput: float
    throughput_unit: str
    throughput_batch: int
    threads: int


class Footprint(BaseModel):
    """How big a model is."""

    parameters: int
    size_mb: float


def folder_size_mb(folder: Path) -> float:
    """Size of the weight files in a model folder, in MB (10^6 bytes)."""
    weights = [
        p
        for p in Path(folder).iterdir()
        if p.suffix in (".safetensors", ".bin", ".pt") and p.is_file()
    ]
    return round(sum(p.stat().st_size for p in weights) / 1e6, 3)


@contextmanager
def _threads(n: int | None) -> Iterator[int]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def probe_input(examples: list[dict[str, Any]], seq_len: int) -> list[int]:
    """A real input of exactly `seq_len` tokens: training examples joined, then cut."""
    ids: list[int] = []
    for ex in examples:
        ids += ex["input_ids"]
        if len(ids) >= seq_len:
            break
    while len(ids) < seq_len:
        ids += ids or [0]
    return ids[:seq_len]


def measure_speeds(
    models: dict[str, Any], ids: list[int], spec: Any, causal: bool
) -> dict[str, SpeedStats]:
    """Latency at batch 1 and throughput at `spec.throughput_batch` of several models, on CPU.

    The models take turns run by run (teacher, student, teacher, ...), so a change in the
    machine's load during the measurement hits every model alike and their ratios stay fair.
    """
    import torch

    one = torch.tensor([ids])
    many = one.repeat(spec.throughput_batch, 1)
    kwargs = {"use_cache": False} if causal else {}
    times: dict[str, list[float]] = {role: [] for role in models}
    batch_times: dict[str, list[float]] = {role: [] for role in models}

    def timed(model: Any, x: Any) -> float:
        t0 = time.perf_counter()
        model(input_ids=x, **kwargs)
        return time.perf_counter() - t0

    with _threads(spec.threads) as threads, torch.inference_mode():
        for model in models.values():
            model.eval()
            for _ in range(WARMUP):
                model(input_ids=one, **kwargs)
            model(input_ids=many, **kwargs)
        for _ in range(spec.latency_runs):
            for role, model in models.items():
                times[role].append(timed(model, one))
        for _ in range(spec.throughput_runs):
            for role, model in models.items():
                batch_times[role].append(timed(model, many))
    units = spec.throughput_batch * (len(ids) if causal else 1)
    return {
        role: SpeedStats(
            seq_len=len(ids),
            latency_ms=round(1000 * statistics.median(times[role]), 3),
            latency_p90_ms=round(1000 * _quantile(times[role], 0.9), 3),
            throughput=round(units / statistics.median(batch_times[role]), 2),
            throughput_unit="tokens/s" if causal else "examples/s",
            throughput_batch=spec.throughput_batch,
            threads=threads,
        )
        for role in models
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine() -> dict[str, Any]:
    """The CPU the speeds were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "system": platform.platform()}
