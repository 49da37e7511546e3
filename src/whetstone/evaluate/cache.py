"""A model wrapper that answers from the response cache and stores what it computes.

Work is done in chunks and each chunk is committed as soon as it is computed, so a run that is
killed (Ctrl-C or kill -9) loses at most one chunk and a resumed run recomputes nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
)
from whetstone.store import Store, request_hash

Req = TypeVar("Req")
Res = TypeVar("Res")

CHUNK = {"loglikelihood": 512, "rolling": 8, "generation": 32}
"""Requests computed between two commits to the cache."""


class CachedModel:
    """Answers requests from the store's cache first and computes only the missing ones."""

    def __init__(self, model: LanguageModel, store: Store | None) -> None:
        self.model = model
        self.store = store
        self.computed = 0
        self.reused = 0

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """Cached `LanguageModel.loglikelihood`."""
        return self._run(
            "loglikelihood",
            requests,
            self.model.loglikelihood,
            progress,
            lambda r: dataclasses.asdict(r),
            lambda d: LoglikelihoodResult(**d),
        )

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """Cached `LanguageModel.loglikelihood_rolling`."""
        return self._run(
            "rolling",
            requests,
            self.model.loglikelihood_rolling,
            progress,
            lambda r: dataclasses.asdict(r),
            lambda d: RollingResult(**d),
        )

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Cached `LanguageModel.generate`."""
        return self._run(
            "generation",
            requests,
            self.model.generate,
            progress,
            lambda r: r,
            lambda s: s,
        )

    def _run(
        self,
        kind: str,
        requests: Sequence[Req],
        compute: Callable[[Sequence[Req], Progress | None], list[Res]],
        progress: Progress | None,
        dump: Callable[[Res], Any],
        load: Callable[[Any], Res],
    ) -> list[Res]:
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
        step = self.model.cache_chunk or CHUNK[kind]
        for lo in range(0, len(missing), step):
            chunk = missing[lo : lo + step]
            answers = compute([by_key[k] for k in chunk], progress)
            results.update(zip(chunk, answers, strict=True))
            self.computed += len(chunk)
            if self.store is not None:
                self.store.cache_put(
                    self.model.identity.key,
                    kind,
                    {k: dump(a) for k, a in zip(chunk, answers, strict=True)},
                )
        return [results[k] for k in keys]
