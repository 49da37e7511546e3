"""Shards of model requests computed by a pool of workers, with the same response cache.

`ShardedCachedModel` is the cluster counterpart of `CachedModel`: it looks requests up in the
cache with the same keys, cuts the missing ones (in item order) into shards, hands them to a
dispatcher that computes them in parallel, and commits every shard to the cache the moment it
comes back. Answers are put back in request order, so the scorers, their metrics and intervals
see what a local run gives them; by default a shard is a local run's chunk, so even a backend
whose numbers depend on the batch gives the same bits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from whetstone.evaluate.cache import CHUNK, CachedModel, Req, Res
from whetstone.models.base import LoglikelihoodRequest, Progress
from whetstone.store import Store, request_hash

METHODS = {
    "loglikelihood": "loglikelihood",
    "rolling": "loglikelihood_rolling",
    "generation": "generate",
}
"""The `LanguageModel` method that answers each kind of request."""


class Dispatcher(Protocol):
    """Computes shards of requests on workers and yields them as they finish."""

    def run(self, kind: str, shards: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
        """Yield `(shard index, answers)` for every shard, in the order they finish."""


def plan_shards(
    kind: str, requests: Sequence[Any], size: int | None = None
) -> list[tuple[int, int]]:
    """Consecutive `[lo, hi)` ranges that cover `requests`.

    By default a shard is what a local run computes at once (`CHUNK[kind]` requests), so each
    model call sees the very batch it sees locally and every backend gives bit-identical
    numbers. With `size`, shards hold `size` requests, except that log-likelihood requests of
    one context (the choices of a question, the labels of an item) stay in one shard, so a
    worker computes that context once: small runs spread over more workers, and a backend whose
    numbers depend on the batch (transformers, in float rounding) may differ in the last digits.
    """
    n = len(requests)
    step = size or CHUNK[kind]
    bounds: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        hi = min(n, lo + step)
        if size is not None and kind == "loglikelihood":
            while hi < n and _context(requests[hi]) == _context(requests[hi - 1]):
                hi += 1
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _context(request: Any) -> str | None:
    return request.context if isinstance(request, LoglikelihoodRequest) else None


class ShardedCachedModel(CachedModel):
    """`CachedModel` whose missing requests are computed in shards by a dispatcher."""

    def __init__(
        self, model: Any, store: Store | None, dispatcher: Dispatcher, shard_size: int | None = None
    ) -> None:
        super().__init__(model, store)
        self.dispatcher = dispatcher
        self.shard_size = shard_size

    def _run(
        self,
        kind: str,
        requests: Sequence[Req],
        compute: Callable[[Sequence[Req], Progress | None], list[Res]],
        progress: Progress | None,
        dump: Callable[[Res], Any],
        load: Callable[[Any], Res],
    ) -> list[Res]:
        # the same keys as CachedModel, so local and sharded runs share one cache
        keys = [request_hash([kind, dataclasses.asdict(r)]) for r in requests]  # type: ignore[call-overload]
        found: dict[str, Any] = {}
        if self.store is not None:
            found = self.store.cache_get(self.model.identity.key, kind, sorted(set(keys)))
        results: dict[str, Res] = {k: load(v) for k, v in found.items()}
        missing = list(dict.fromkeys(k for k in keys if k not in results))
        by_key = dict(zip(keys, requests, strict=True))
        self.reused += len(keys) - len(missing)
        if progress and len(keys) > len(missing):
            progress(len(keys) - len(missing))
        bounds = plan_shards(kind, [by_key[k] for k in missing], self.shard_size)
        shards = [[by_key[k] for k in missing[lo:hi]] for lo, hi in bounds]
        for index, answers in self.dispatcher.run(kind, shards):
            lo, hi = bounds[index]
            chunk = missing[lo:hi]
            results.update(zip(chunk, answers, strict=True))
            self.computed += len(chunk)
            if self.store is not None:
                self.store.cache_put(
                    self.model.identity.key,
                    kind,
                    {k: dump(a) for k, a in zip(chunk, answers, strict=True)},
                )
            if progress:
                progress(len(chunk))
        return [results[k] for k in keys]


def collect(
    dispatcher: Dispatcher,
    kind: str,
    requests: Sequence[Any],
    progress: Progress | None = None,
    shard_size: int | None = None,
) -> list[Any]:
    """Every answer to `requests`, computed in shards without a cache, in request order."""
    bounds = plan_shards(kind, requests, shard_size)
    answers: list[Any] = [None] * len(requests)
    for index, shard in dispatcher.run(kind, [requests[lo:hi] for lo, hi in bounds]):
        lo, hi = bounds[index]
        answers[lo:hi] = shard
        if progress:
            progress(hi - lo)
    return answers
