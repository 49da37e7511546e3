"""The protocol every model backend implements, and the requests it answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from whetstone.records import ModelIdentity

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[int], None]
"""Called with the number of requests just finished, so callers can drive a progress bar."""


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Log-probability of `continuation` given `context` (as lm-evaluation-harness defines it)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Summed log-probability of the continuation and whether greedy decoding yields it."""

    logprob: float
    is_greedy: bool
    n_tokens: int


@dataclass(frozen=True)
class RollingRequest:
    """Log-likelihood of a whole document scored in windows of `max_length` tokens.

    Each window predicts `stride` new tokens (the first predicts up to `max_length`) and sees up
    to `max_length` tokens of context, so `stride < max_length` gives overlapping windows.
    """

    text: str
    max_length: int
    stride: int


@dataclass(frozen=True)
class RollingResult:
    """Summed log-probability of every token of a document and the number of tokens."""

    logprob: float
    n_tokens: int


@dataclass(frozen=True)
class GenerationRequest:
    """Text generation from `prompt`: greedy when temperature is 0, cut at the first stop string."""

    prompt: str
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class TokenLogprob:
    """Log-probability of one token and the most likely alternatives at its position."""

    token_id: int
    logprob: float | None
    top: dict[int, float] = field(default_factory=dict)


class LanguageModel(ABC):
    """A model that whetstone can evaluate: log-likelihoods and generations from text."""

    identity: ModelIdentity
    #: Requests computed between two commits of the response cache (None: the defaults per
    #: request kind). A slow remote server commits every batch, so a crash loses one batch.
    cache_chunk: int | None = None

    @abstractmethod
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context; results keep the order of requests."""

    @abstractmethod
    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """Score whole documents with rolling windows; results keep the order of requests."""

    @abstractmethod
    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Generate a completion for each prompt; results keep the order of requests."""

    @property
    def has_chat_template(self) -> bool:
        """Whether the model ships a chat template of its own."""
        return False

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """Chat messages as a prompt that ends where the reply starts.

        Models without a template of their own get a plain `role: content` transcript.
        """
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join([*lines, "assistant:"])

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release memory and connections held by the model."""


@runtime_checkable
class LabelScorer(Protocol):
    """A model that gives class probabilities of an input text (a sequence classifier) instead
    of log-likelihoods of the label words after a prompt."""

    def label_probabilities(
        self,
        texts: Sequence[str],
        labels: Mapping[str, str],
        task_name: str,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Probabilities over a task's labels (in the task's order) for each text."""
        ...


class TokenModel(LanguageModel):
    """A local model whose tokens are visible: what `whetstone serve` needs."""

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Longest sequence of tokens the model accepts."""

    @abstractmethod
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, with the model's start token when `add_special_tokens`."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids."""

    @abstractmethod
    def token_logprobs(self, ids: Sequence[int], top_k: int = 0) -> list[TokenLogprob]:
        """Log-probability of every token given those before it (None for the first)."""

    @abstractmethod
    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield the generated text piece by piece, stopping at a stop string or the budget."""
