"""A model backend that answers from a stored run's outputs: what `whetstone rescore` scores.

Every request the task scorers make is looked up among the outputs the run stored (choice
log-likelihoods, generated texts, document log-likelihoods), so metrics are recomputed by the
same code that scored the run, without calling the model. A request the run never answered (the
prompt template, the few-shot examples or the choices changed since) is an error naming the
task and item, never a silent recomputation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from whetstone.errors import DataError
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
)
from whetstone.models.tokenized import cut_at_stop
from whetstone.records import ModelIdentity, SampleRecord
from whetstone.tasks.schema import TaskConfig

#: Backends whose runs stored class probabilities of the input text, not prompt log-likelihoods.
CLASSIFIER_BACKENDS = ("hf-classifier",)


class ReplayModel(LanguageModel):
    """Answers the requests of one task from that task's stored samples."""

    def __init__(
        self, identity: ModelIdentity, task: TaskConfig, samples: Sequence[SampleRecord]
    ) -> None:
        self.identity = identity
        self.task = task.name
        self._scores: dict[tuple[str, str], float] = {}
        self._texts: dict[str, list[str]] = {}
        self._served: dict[str, int] = {}
        self._documents: dict[str, RollingResult] = {}
        self._ids: dict[str, str] = {}
        for s in samples:
            self._ids[s.prompt] = s.id
            self._add(task, s)

    def _add(self, task: TaskConfig, s: SampleRecord) -> None:
        options = s.extra.get("choices") or s.extra.get("labels") or []
        if s.loglikelihoods is not None:
            for text, ll in zip(options, s.loglikelihoods, strict=False):
                self._scores[(s.prompt, task.choice_prefix + str(text))] = float(ll)
        if "outputs" in s.extra:
            self._texts[s.prompt] = [str(o) for o in s.extra["outputs"]]
        elif "output" in s.extra:
            self._texts[s.prompt] = [str(s.extra["output"])]
        if task.kind == "perplexity" and "logprob" in s.metrics:
            self._documents[s.prompt] = RollingResult(
                float(s.metrics["logprob"]), int(s.metrics["n_tokens"])
            )

    def _missing(self, prompt: str, what: str) -> DataError:
        item = self._ids.get(prompt)
        where = f"item {item}" if item else f"a prompt starting {prompt[:60]!r}"
        return DataError(
            f"rescore: task {self.task}, {where}: the stored run has no {what} for this request "
            "(the prompt template, few-shot examples, choices or labels changed since the run); "
            "rescore recomputes metrics from stored outputs only: evaluate again instead"
        )

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """The stored log-likelihood of each (context, continuation)."""
        out = []
        for r in requests:
            score = self._scores.get((r.context, r.continuation))
            if score is None:
                raise self._missing(r.context, f"log-likelihood of {r.continuation!r}")
            out.append(LoglikelihoodResult(score, is_greedy=False, n_tokens=0))
        if progress:
            progress(len(requests))
        return out

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """The stored log-likelihood and token count of each document."""
        out = []
        for r in requests:
            found = self._documents.get(r.text)
            if found is None:
                raise self._missing(r.text, "document log-likelihood")
            out.append(found)
        if progress:
            progress(len(requests))
        return out

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """The stored output of each prompt, cut at the request's stop strings (a stop string
        added since the run applies; one removed cannot bring back what the run cut). A run
        with repeats stored K outputs per item: a prompt's successive requests get them in
        turn, as the scorer asks for them."""
        out = []
        for r in requests:
            texts = self._texts.get(r.prompt)
            if texts is None:
                raise self._missing(r.prompt, "generated output")
            turn = self._served.get(r.prompt, 0)
            self._served[r.prompt] = turn + 1
            out.append(cut_at_stop(texts[turn % len(texts)], r.stop)[0])
        if progress:
            progress(len(requests))
        return out


class ReplayClassifier(ReplayModel):
    """Replays a sequence classifier's run: class probabilities of each input text."""

    def label_probabilities(
        self,
        texts: Sequence[str],
        labels: Mapping[str, str],
        task_name: str,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """The stored probabilities of the task's labels for each text."""
        names = list(labels.values())
        rows = []
        for text in texts:
            scores = [self._scores.get((text, name)) for name in names]
            if any(s is None for s in scores):
                raise self._missing(text, "class probabilities")
            rows.append(np.exp(np.asarray(scores, dtype=float)))
        if progress:
            progress(len(texts))
        return np.vstack(rows) if rows else np.zeros((0, len(names)))


def replay_model(
    identity: ModelIdentity, task: TaskConfig, samples: Sequence[SampleRecord]
) -> ReplayModel:
    """The replay backend for one task of a run made by the model `identity`."""
    if identity.backend in CLASSIFIER_BACKENDS:
        plain = task.model_copy(update={"choice_prefix": ""})
        return ReplayClassifier(identity, plain, samples)
    return ReplayModel(identity, task, samples)
