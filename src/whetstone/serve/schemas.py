"""Request and response bodies of `whetstone serve`, field for field as OpenAI's and vLLM's.

Only the fields whetstone acts on are declared on requests; others (user, logit_bias,
presence_penalty, ...) are accepted and ignored, as vLLM ignores what it does not support.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field


def _now() -> int:
    return int(time.time())


# -- errors ------------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    """The body of an error: a message, vLLM's error type name and the HTTP status."""

    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    """`{"error": {...}}`, as OpenAI and vLLM answer a failed request."""

    error: ErrorInfo


# -- models ------------------------------------------------------------------------------


class ModelCard(BaseModel):
    """One served model in `GET /v1/models`."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "whetstone"
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    """The answer of `GET /v1/models`."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- shared ------------------------------------------------------------------------------


class StreamOptions(BaseModel):
    """`stream_options`: whether the last streamed chunk carries the usage."""

    include_usage: bool | None = False


class UsageInfo(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = 0

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> UsageInfo:
        """Counts of a prompt and its completion, with their total."""
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


# -- completions -------------------------------------------------------------------------

Prompt = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(BaseModel):
    """`POST /v1/completions` (the legacy completions API)."""

    model: str | None = None
    prompt: Prompt
    max_tokens: int | None = 16
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    echo: bool | None = False
    logprobs: int | None = None
    n: int = 1
    best_of: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    return_tokens_as_token_ids: bool | None = None
    """vLLM's extension: tokens and top_logprobs keys as `token_id:N` instead of text."""


class CompletionLogProbs(BaseModel):
    """Per-token log-probabilities of a completion choice (the legacy format)."""

    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionResponseChoice(BaseModel):
    """One choice of a completion (or a piece of a streamed one): text, log-probabilities,
    and why it ended."""

    index: int
    text: str
    logprobs: CompletionLogProbs | None = None
    finish_reason: Literal["stop", "length"] | None = None
    stop_reason: int | str | None = None


class CompletionResponse(BaseModel):
    """The answer of `POST /v1/completions` without streaming."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo


class CompletionStreamResponse(BaseModel):
    """One server-sent event of a streamed completion."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionResponseChoice]
    usage: UsageInfo | None = None


# -- chat --------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """A chat message; `content` may be a string or a list of `{"type": "text"}` parts."""

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, with text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`."""

    model: str | None = None
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    logprobs: bool | None = False
    stream: bool | None = False
    stream_options: StreamOptions | None = None


class ChatResponseMessage(BaseModel):
    """The assistant's reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionResponseChoice(BaseModel):
    """One choice of a chat completion."""

    index: int
    message: ChatResponseMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None
    stop_reason: int | str | None = None


class ChatCompletionResponse(BaseModel):
    """The answer of `POST /v1/chat/completions` without streaming."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatCompletionResponseChoice]
    usage: UsageInfo


class ChatCompletionResponseStreamChoice(BaseModel):
    """One piece of a streamed chat choice: `delta` holds `role` and/or `content`."""

    index: int
    delta: dict[str, str]
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionStreamResponse(BaseModel):
    """One server-sent event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatCompletionResponseStreamChoice]
    usage: UsageInfo | None = None


# -- tokenizer endpoints (vLLM's extras) -------------------------------------------------


class TokenizeRequest(BaseModel):
    """`POST /tokenize`: a prompt, or chat messages rendered with the model's chat prompt."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool | None = False


class TokenizeResponse(BaseModel):
    """Token ids of the prompt, their count and the model's context length."""

    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(BaseModel):
    """`POST /detokenize`."""

    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    """Text of the token ids."""

    prompt: str
