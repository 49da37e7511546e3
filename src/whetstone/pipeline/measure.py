"""What a candidate costs: per-item latency, parameter count and size on disk.

Latency is the model's own time to answer one item of a task (its requests only: prompt
building and metric arithmetic are left out), measured with the response cache off, one item
at a time after a warm-up, and summarized by the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from whetstone.evaluate.cache import CachedModel
from whetstone.evaluate.engine import PreparedTask
from whetstone.evaluate.kinds import SCORERS, TaskContext
from whetstone.models.base import LanguageModel

#: Files counted as a model's weights when its size on disk is measured.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".onnx")


class Costs(BaseModel):
    """A candidate's costs; None where the backend does not say (a remote server)."""

    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_task: str | None = None
    latency_items: int = 0
    params: int | None = None
    size_mb: float | None = None

    def as_metrics(self) -> dict[str, float]:
        """The costs that are known, under the names selection rules use."""
        values = {"latency_ms": self.latency_ms, "params": self.params, "size_mb": self.size_mb}
        return {k: float(v) for k, v in values.items() if v is not None}


#: The model methods whose time counts as answering (a sequence classifier's class
#: probabilities included).
TIMED_METHODS = ("loglikelihood", "loglikelihood_rolling", "generate", "label_probabilities")


class CallTimer:
    """Adds up the seconds spent in a model's answering methods (outermost calls only)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """`method`, timed."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - t0

        return timed


@contextmanager
def timed_calls(model: LanguageModel) -> Iterator[CallTimer]:
    """Time the model's own answering methods; the model object itself is left in place (so
    the scorers still see its type), with its methods wrapped on the instance until the end."""
    timer = CallTimer()
    patched = []
    for name in TIMED_METHODS:
        method = getattr(model, name, None)
        if callable(method):
            setattr(model, name, timer.wrap(method))
            patched.append(name)
    try:
        yield timer
    finally:
        for name in patched:
            delattr(model, name)


def measure_latency(
    model: LanguageModel, task: PreparedTask, items: int, warmup: int, seed: int = 0
) -> tuple[float, float, int]:
    """(median ms, 90th percentile ms, items timed) to answer one item of `task` at a time."""
    ctx = TaskContext(CachedModel(model, None), seed, lambda text: text)
    scorer = SCORERS[task.config.kind]
    chosen = task.items[: warmup + items]
    times: list[float] = []
    with timed_calls(model) as timer:
        for i, item in enumerate(chosen):
            timer.seconds = 0.0
            scorer(task.config, [item], task.pool, ctx)
            if i >= warmup:
                times.append(timer.seconds * 1000)
    if not times:
        return float("nan"), float("nan"), 0
    times.sort()
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return statistics.median(times), p90, len(times)


def _module_parameters(module: Any) -> int:
    """Parameters of a torch module, counting the packed weights of quantized layers (which
    `parameters()` does not list)."""
    total = sum(p.numel() for p in module.parameters())
    for sub in module.modules():
        packed = getattr(sub, "_packed_params", None)
        weight_bias = getattr(packed, "_weight_bias", None)
        if callable(weight_bias):
            total += sum(t.numel() for t in weight_bias() if t is not None)
    return int(total)


def count_parameters(model: LanguageModel) -> int | None:
    """The parameter count of a local model (a torch module or a backend that reports it)."""
    reported = getattr(model, "num_parameters", None)
    if callable(reported):
        return int(reported())
    if isinstance(reported, int):
        return reported
    module = getattr(model, "model", None)
    if callable(getattr(module, "parameters", None)):
        return _module_parameters(module)
    return None


def size_on_disk_mb(path: str | Path | None) -> float | None:
    """The size of a model's weight files (a file, or the weights in a folder), in MB."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_file():
        return p.stat().st_size / 1e6
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES]
        return sum(f.stat().st_size for f in files) / 1e6 if files else None
    return None


def model_folder(spec: str, model: LanguageModel) -> str | None:
    """Where a model's weights lie on disk, if anywhere (the embedded default's cache folder)."""
    source = getattr(model, "source", None)
    if spec == "default" and source:
        return str(source)
    p = Path(spec).expanduser()
    return str(p) if p.exists() else None
