"""Text-level requests turned into token windows, shared by every local backend.

A local backend implements one scoring primitive, `score`, over `ScoreWindow`s; this module
encodes log-likelihood and rolling requests into such windows exactly as lm-evaluation-harness
does, so the numbers agree with it where the definitions agree.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from whetstone.models.base import (
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
    TokenModel,
)


@dataclass(frozen=True)
class ScoreWindow:
    """A token sequence whose last `n_targets` tokens are scored, each given all before it."""

    tokens: tuple[int, ...]
    n_targets: int


@dataclass(frozen=True)
class WindowScore:
    """Summed log-probability of a window's targets and whether each is the argmax."""

    logprob: float
    is_greedy: bool


def rolling_windows(
    tokens: Sequence[int], prefix_token: int, max_length: int, stride: int
) -> list[ScoreWindow]:
    """Windows that together score every token of a document exactly once.

    The first window predicts up to `max_length` tokens after `prefix_token`; each later one
    predicts the next `stride` tokens with up to `max_length` tokens of input. With
    `stride == max_length` this is lm-evaluation-harness's `get_rolling_token_windows` with
    `context_len=1` followed by `make_disjoint_window`.
    """
    if not tokens:
        return []
    first = min(max_length, len(tokens))
    windows = [ScoreWindow((prefix_token, *tokens[:first]), first)]
    predicted = first
    while predicted < len(tokens):
        n = min(stride, len(tokens) - predicted)
        end = predicted + n
        windows.append(ScoreWindow(tuple(tokens[max(0, end - max_length - 1) : end]), n))
        predicted = end
    return windows


class TokenizedBackend(TokenModel):
    """Implements the text-level protocol on top of `score`, the one primitive a backend needs."""

    @property
    @abstractmethod
    def prefix_token_id(self) -> int:
        """Token that precedes a document or an empty context (BOS, else EOS, as lm-eval)."""

    @abstractmethod
    def score(
        self, windows: Sequence[ScoreWindow], progress: Progress | None = None
    ) -> list[WindowScore]:
        """Score every window; results keep the order of `windows`."""

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens, split as lm-evaluation-harness's `_encode_pair`."""
        if not context:
            return [self.prefix_token_id], self.encode(continuation, add_special_tokens=False)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids) :]

    def loglikelihood_window(self, request: LoglikelihoodRequest) -> ScoreWindow:
        """The window that scores one request, left-truncated to the model's length."""
        context_ids, continuation_ids = self.encode_pair(request.context, request.continuation)
        tokens = (context_ids + continuation_ids)[-(self.max_length + 1) :]
        # a continuation longer than the model: its first tokens have no context left to score
        return ScoreWindow(tuple(tokens), min(len(continuation_ids), len(tokens) - 1))

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context."""
        windows = [self.loglikelihood_window(r) for r in requests]
        scores = self.score(windows, progress)
        return [
            LoglikelihoodResult(s.logprob, s.is_greedy, w.n_targets)
            for w, s in zip(windows, scores, strict=True)
        ]

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """Score whole documents: every token once, in windows of at most `max_length`."""
        owners: list[int] = []
        windows: list[ScoreWindow] = []
        counts: list[int] = []
        for i, r in enumerate(requests):
            tokens = self.encode(r.text, add_special_tokens=False)
            max_length = min(r.max_length, self.max_length)
            doc_windows = rolling_windows(
                tokens, self.prefix_token_id, max_length, min(r.stride, max_length)
            )
            windows += doc_windows
            owners += [i] * len(doc_windows)
            counts.append(len(tokens))
        scores = self.score(windows, _scaled(progress, len(windows), len(requests)))
        totals = [0.0] * len(requests)
        for owner, s in zip(owners, scores, strict=True):
            totals[owner] += s.logprob
        return [RollingResult(t, c) for t, c in zip(totals, counts, strict=True)]

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Generate one request at a time from `stream` (backends may batch instead)."""
        outputs = []
        for r in requests:
            outputs.append("".join(self.stream(r)))
            if progress:
                progress(1)
        return outputs


def _scaled(progress: Progress | None, n_windows: int, n_docs: int) -> Progress | None:
    """A progress callback that counts windows but reports documents, proportionally."""
    if progress is None or n_windows == 0:
        return progress
    state = {"windows": 0, "reported": 0}

    def report(n: int) -> None:
        state["windows"] += n
        docs = state["windows"] * n_docs // n_windows
        if docs > state["reported"]:
            progress(docs - state["reported"])
            state["reported"] = docs

    return report


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def stop_prefix_length(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins a stop string (streams hold it back)."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


class StopFilter:
    """Turns generated pieces into text safe to stream: cut at the first stop string, and a
    tail that may begin one is held back until it is known not to.

    Only the held-back tail is kept and searched (a stop string cannot begin in text already
    emitted: that text had no end that begins one), so a long output costs linear time.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = stop
        self.held = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add a piece; return the new text that can be emitted now."""
        if self.stopped:
            return ""
        text = self.held + piece
        cut, self.stopped = cut_at_stop(text, self.stop)
        if self.stopped:
            self.held = ""
            return cut
        keep = stop_prefix_length(text, self.stop)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of generation: the held-back tail (it did not become a stop string)."""
        out, self.held = self.held, ""
        return out
