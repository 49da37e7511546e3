"""An OpenAI-compatible HTTP server over any local `TokenModel`, in vLLM's wire format.

Endpoints: `GET /v1/models`, `POST /v1/completions` (legacy format, with `echo` and
`logprobs` for scoring), `POST /v1/chat/completions` (with SSE streaming), vLLM's
`POST /tokenize` and `POST /detokenize`, and `GET /health`.

Choices that are ours where vLLM leaves room:

- A text prompt is encoded with the model's default special tokens (BOS); a prompt given as
  token ids is used exactly as given. Special tokens have no text: their entry in `tokens` is
  the empty string (`model.decode` drops them) and they take no room in `text_offset`, so
  `text_offset` always indexes the returned `text` (vLLM counts `<s>` there).
- `top_logprobs` holds the `logprobs` most likely tokens plus the chosen one when it is not
  among them (so `logprobs` or `logprobs + 1` entries), as OpenAI and vLLM do.
- A prompt that is only scored (`echo` with `max_tokens` 0) may have `max_length + 1` tokens,
  since its last token is never fed to the model; a prompt to generate from may have
  `max_length`. Generation from a prompt that leaves less than `max_tokens` room is allowed
  (the backend keeps the end of the prompt, as the local backends do).
- Generated tokens are the generated text encoded again (the protocol streams text), and
  generation from a token-id prompt starts from the decoded text of those ids.
- Logprobs are not available while streaming (400).

All model calls (tokenization included) run on one worker thread, so the model does one thing
at a time and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from whetstone.asgi import ASGIApp, BodyLimit, Receive, Scope, Send
from whetstone.errors import missing_extra
from whetstone.models.base import GenerationRequest, TokenLogprob, TokenModel

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise missing_extra("fastapi", "serve") from exc

from whetstone.serve.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionResponseChoice,
    ChatCompletionResponseStreamChoice,
    ChatCompletionStreamResponse,
    ChatResponseMessage,
    CompletionLogProbs,
    CompletionRequest,
    CompletionResponse,
    CompletionResponseChoice,
    CompletionStreamResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    UsageInfo,
)

MAX_LOGPROBS = 20
"""Most alternatives per position (vLLM's default `max_logprobs`)."""

MIN_LOGPROB = -9999.0
"""Log-probabilities are clamped here so that JSON never carries -inf (as vLLM does)."""

PROMPT_FORMS = "a string, a list of strings, a list of token ids or a list of lists of token ids"

ERROR_TYPES = {
    499: "ClientClosedRequest",
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    405: "MethodNotAllowed",
    413: "RequestTooLargeError",
}
DISCONNECT_POLL_S = 0.2
"""How often a non-streaming request checks that its client is still there."""
MIN_TEMPERATURE = 1e-3
"""The smallest non-zero temperature (below it the softmax overflows; 0 is greedy)."""


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask: tokens to generate, body size; and the bearer key, if any."""

    max_tokens: int = 4096
    max_body_bytes: int = 8 * 1024 * 1024
    api_key: str | None = None


T = TypeVar("T")


class APIError(Exception):
    """A request the server refuses: answered as OpenAI's error JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    """`{"error": {"message", "type", "param", "code"}}` with HTTP status `status`."""
    kind = ERROR_TYPES.get(status, "InternalServerError" if status >= 500 else "APIError")
    body = ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status))
    return JSONResponse(body.model_dump(), status_code=status)


# -- the model worker ----------------------------------------------------------------------


class ModelWorker:
    """Runs every model call on one thread: one forward at a time, off the event loop."""

    def __init__(self, model: TokenModel) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whetstone-model")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the model thread and wait for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def iterate(self, make: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
        """Items of the iterator `make()` returns, produced on the model thread.

        The thread holds the model for the whole iteration; a client that goes away stops it
        at the next item.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is gone
                stop.set()

        def work() -> None:
            iterator: Iterator[str] | None = None
            try:
                iterator = make()
                for item in iterator:
                    put("item", item)
                    if stop.is_set():
                        break
            except Exception as exc:
                put("error", exc)
            finally:
                close = getattr(iterator, "close", None)
                if close:
                    close()
                put("end", None)

        loop.run_in_executor(self._executor, work)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()


# -- text offsets --------------------------------------------------------------------------


def token_offsets(decode: Callable[[Sequence[int]], str], ids: Sequence[int]) -> list[int]:
    """Character offset in `decode(ids)` where the text of each token starts.

    Incremental detokenization as vLLM does it (a token whose text is incomplete, such as the
    first byte of a UTF-8 character, shares the offset of the token that completes it); when
    the pieces do not add up to the whole text, offsets come from decoding every prefix.
    """
    full = decode(ids)
    offsets: list[int] = []
    pieces: list[str] = []
    pos, prefix_start, read_start = 0, 0, 0
    for i in range(len(ids)):
        offsets.append(pos)
        prefix_text = decode(ids[prefix_start:read_start])
        new_text = decode(ids[prefix_start : i + 1])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            pieces.append(new_text[len(prefix_text) :])
            pos += len(pieces[-1])
            prefix_start, read_start = read_start, i + 1
    if "".join(pieces) == full:
        return offsets
    return [_common_prefix(decode(ids[:i]), full) for i in range(len(ids))]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# -- completions ---------------------------------------------------------------------------


@dataclass
class PreparedPrompt:
    """A prompt's token ids and text, checked against the model's length."""

    ids: list[int]
    text: str


@dataclass
class Sampling:
    """Generation settings shared by the prompts of one request."""

    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...]
    cap: int = ServeLimits.max_tokens

    def budget(self, model: TokenModel, n_prompt: int) -> int:
        """Tokens to generate: `max_tokens`, or what the context leaves (at most the server's
        cap) when it is None."""
        if self.max_tokens is None:
            return min(self.cap, max(0, model.max_length - n_prompt))
        return self.max_tokens

    def request(self, prompt: str, budget: int) -> GenerationRequest:
        """The protocol's generation request for `prompt`."""
        return GenerationRequest(
            prompt=prompt,
            max_new_tokens=budget,
            stop=self.stop,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )


def _sampling(
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    seed: int | None,
    stop: str | list[str] | None,
    cap: int,
) -> Sampling:
    if max_tokens is not None and max_tokens < 0:
        raise APIError(400, f"max_tokens must be at least 0, got {max_tokens}")
    if max_tokens is not None and max_tokens > cap:
        raise APIError(400, f"max_tokens may be at most {cap} on this server, got {max_tokens}")
    temp = 1.0 if temperature is None else temperature
    if not (temp == 0 or MIN_TEMPERATURE <= temp <= 2):
        raise APIError(400, f"temperature must be 0 or from {MIN_TEMPERATURE} to 2, got {temp}")
    nucleus = 1.0 if top_p is None else top_p
    if not 0 < nucleus <= 1:
        raise APIError(400, f"top_p must be in (0, 1], got {nucleus}")
    if seed is not None and not 0 <= seed < 2**63:
        raise APIError(400, f"seed must be from 0 to 2**63 - 1, got {seed}")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    chosen = secrets.randbits(31) if seed is None else seed
    return Sampling(max_tokens, temp, nucleus, chosen, stops, cap)


def _too_long(model: TokenModel, n: int, limit: int) -> APIError:
    return APIError(
        400,
        f"This model's maximum context length is {model.max_length} tokens. However, your "
        f"prompt has {n} tokens (at most {limit} here). Please reduce the length of the prompt.",
    )


def _finish_reason(model: TokenModel, text: str, budget: int) -> tuple[list[int], str]:
    """The generated text's ids (encoded again: the protocol streams text) and why it ended."""
    ids = model.encode(text, add_special_tokens=False) if text else []
    return ids, ("length" if len(ids) >= budget else "stop")


class Server:
    """The request handlers, bound to one model and the name it is served under."""

    def __init__(
        self, model: TokenModel, model_name: str, limits: ServeLimits | None = None
    ) -> None:
        self.model = model
        self.model_name = model_name
        self.limits = limits or ServeLimits()
        self.worker = ModelWorker(model)

    def check_model(self, name: str | None) -> str:
        """The served name; 404 for another model, as vLLM answers."""
        if name is not None and name != self.model_name:
            raise APIError(404, f"The model `{name}` does not exist.")
        return self.model_name

    # -- prompts -----------------------------------------------------------------------

    def prepare(self, prompt: Any, limit: int) -> list[PreparedPrompt]:
        """Each prompt of a completion request as ids and text, checked against `limit`."""
        if isinstance(prompt, str):
            prompts: list[str | list[int]] = [prompt]
        elif prompt and isinstance(prompt[0], int):
            prompts = [list(prompt)]
        else:
            prompts = list(prompt)
        if not prompts:
            raise APIError(400, "prompt must not be empty")
        out = []
        for p in prompts:
            if isinstance(p, str):
                ids, text = self.model.encode(p), p
            else:
                if not p:
                    raise APIError(400, "a prompt of token ids must not be empty")
                if min(p) < 0:
                    raise APIError(400, "token ids must be non-negative")
                ids, text = list(p), self._decode(p)
            if len(ids) > limit:
                raise _too_long(self.model, len(ids), limit)
            out.append(PreparedPrompt(ids, text))
        return out

    def _decode(self, ids: Sequence[int]) -> str:
        try:
            return self.model.decode(ids)
        except (IndexError, ValueError, OverflowError) as exc:
            raise APIError(400, f"a token id is outside the model's vocabulary ({exc})") from exc

    # -- completions -------------------------------------------------------------------

    def _generate(self, request: GenerationRequest, cancel: threading.Event | None) -> str:
        """The whole generated text; stops at the next piece once ``cancel`` is set (the
        client left), so the model is free for the next request."""
        pieces = []
        stream = self.model.stream(request)
        try:
            for piece in stream:
                if cancel is not None and cancel.is_set():
                    raise APIError(499, "the client closed the request")
                pieces.append(piece)
        finally:
            close = getattr(stream, "close", None)
            if close:
                close()
        return "".join(pieces)

    def complete(
        self,
        prompt: PreparedPrompt,
        sampling: Sampling,
        request: CompletionRequest,
        index: int,
        cancel: threading.Event | None = None,
    ) -> tuple[CompletionResponseChoice, int]:
        """One choice of a completion and its number of generated tokens."""
        budget = sampling.budget(self.model, len(prompt.ids))
        generated = ""
        if budget > 0:
            generated = self._generate(sampling.request(prompt.text, budget), cancel)
        gen_ids, finish = _finish_reason(self.model, generated, budget)
        logprobs = None
        if request.logprobs is not None:
            logprobs = self.logprobs(prompt, generated, gen_ids, request)
        text = prompt.text + generated if request.echo else generated
        choice = CompletionResponseChoice(
            index=index,
            text=text,
            logprobs=logprobs,
            finish_reason=finish,
        )
        return choice, len(gen_ids)

    def logprobs(
        self, prompt: PreparedPrompt, generated: str, gen_ids: list[int], request: CompletionRequest
    ) -> CompletionLogProbs:
        """Logprobs of the generated tokens, after those of the prompt with `echo`."""
        top_k = request.logprobs or 0
        ids = prompt.ids + gen_ids
        try:
            entries = self.model.token_logprobs(ids, top_k=top_k)
        except IndexError as exc:
            raise APIError(400, f"a token id is outside the model's vocabulary ({exc})") from exc
        offsets = token_offsets(self.model.decode, ids)
        n_prompt = len(prompt.ids)
        decoded_prompt = offsets[n_prompt] if gen_ids else len(self.model.decode(prompt.ids))
        # prompt tokens index the prompt text; generated ones start after it
        offsets = [min(o, len(prompt.text)) for o in offsets[:n_prompt]] + [
            len(prompt.text) + max(0, o - decoded_prompt) for o in offsets[n_prompt:]
        ]
        start = 0 if request.echo else n_prompt
        if not request.echo:
            offsets = [o - len(prompt.text) for o in offsets]
        as_ids = bool(request.return_tokens_as_token_ids)
        out = CompletionLogProbs()
        for entry, offset in zip(entries[start:], offsets[start:], strict=True):
            out.tokens.append(self._token_str(entry.token_id, as_ids))
            out.text_offset.append(offset)
            out.token_logprobs.append(_clamp(entry.logprob))
            out.top_logprobs.append(self._top(entry, top_k, as_ids))
        return out

    def _token_str(self, token_id: int, as_ids: bool) -> str:
        return f"token_id:{token_id}" if as_ids else self.model.decode([token_id])

    def _top(self, entry: TokenLogprob, top_k: int, as_ids: bool) -> dict[str, float] | None:
        if entry.logprob is None:
            return None
        top: dict[str, float] = {}
        ranked = sorted(entry.top.items(), key=lambda kv: -kv[1])[:top_k]
        for token_id, logprob in [*ranked, (entry.token_id, entry.logprob)]:
            top.setdefault(self._token_str(token_id, as_ids), max(logprob, MIN_LOGPROB))
        return top

    async def completions(
        self, request: CompletionRequest, cancel: threading.Event | None = None
    ) -> CompletionResponse:
        """`POST /v1/completions` without streaming."""
        name, sampling, limit = self._completion_settings(request)
        prompts = await self.worker.call(self.prepare, request.prompt, limit)
        choices, n_prompt, n_gen = [], 0, 0
        for i, p in enumerate(prompts):
            choice, n = await self.worker.call(self.complete, p, sampling, request, i, cancel)
            choices.append(choice)
            n_prompt, n_gen = n_prompt + len(p.ids), n_gen + n
        usage = UsageInfo.of(n_prompt, n_gen)
        return CompletionResponse(
            id=f"cmpl-{uuid.uuid4().hex}", model=name, choices=choices, usage=usage
        )

    def _completion_settings(self, request: CompletionRequest) -> tuple[str, Sampling, int]:
        name = self.check_model(request.model)
        if request.n != 1 or (request.best_of is not None and request.best_of != 1):
            raise APIError(400, "n and best_of must be 1: whetstone serve returns one choice")
        if request.logprobs is not None and not 0 <= request.logprobs <= MAX_LOGPROBS:
            raise APIError(400, f"logprobs must be between 0 and {MAX_LOGPROBS}")
        if request.max_tokens == 0 and not request.echo:
            raise APIError(400, "max_tokens must be at least 1 unless echo is true")
        if request.stream and request.logprobs is not None:
            raise APIError(400, "logprobs are not available while streaming")
        sampling = _sampling(
            request.max_tokens,
            request.temperature,
            request.top_p,
            request.seed,
            request.stop,
            self.limits.max_tokens,
        )
        limit = self.model.max_length + (1 if request.max_tokens == 0 else 0)
        return name, sampling, limit

    async def stream_completions(self, request: CompletionRequest) -> StreamingResponse:
        """`POST /v1/completions` with `stream`: text pieces as server-sent events."""
        name, sampling, limit = self._completion_settings(request)
        prompts = await self.worker.call(self.prepare, request.prompt, limit)
        ident = f"cmpl-{uuid.uuid4().hex}"

        def chunk(index: int, text: str, finish: str | None = None) -> str:
            choice = CompletionResponseChoice(
                index=index,
                text=text,
                finish_reason=finish,
            )
            return _sse(CompletionStreamResponse(id=ident, model=name, choices=[choice]))

        async def events() -> AsyncIterator[str]:
            n_prompt, n_gen = 0, 0
            try:
                for i, p in enumerate(prompts):
                    if request.echo:
                        yield chunk(i, p.text)
                    budget = sampling.budget(self.model, len(p.ids))
                    generated = ""
                    if budget > 0:
                        make = functools.partial(
                            self.model.stream, sampling.request(p.text, budget)
                        )
                        async for piece in self.worker.iterate(make):
                            generated += piece
                            yield chunk(i, piece)
                    ids, finish = await self.worker.call(
                        _finish_reason, self.model, generated, budget
                    )
                    yield chunk(i, "", finish)
                    n_prompt, n_gen = n_prompt + len(p.ids), n_gen + len(ids)
                if request.stream_options and request.stream_options.include_usage:
                    usage = UsageInfo.of(n_prompt, n_gen)
                    yield _sse(
                        CompletionStreamResponse(id=ident, model=name, choices=[], usage=usage)
                    )
            except Exception as exc:
                yield _sse_error(exc)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # -- chat --------------------------------------------------------------------------

    def _chat_settings(
        self, request: ChatCompletionRequest
    ) -> tuple[str, Sampling, list[dict[str, str]]]:
        name = self.check_model(request.model)
        if request.n != 1:
            raise APIError(400, "n must be 1: whetstone serve returns one choice")
        if request.logprobs:
            raise APIError(400, "logprobs are not available for chat completions")
        if not request.messages:
            raise APIError(400, "messages must not be empty")
        max_tokens = (
            request.max_completion_tokens
            if request.max_completion_tokens is not None
            else request.max_tokens
        )
        if max_tokens is not None and max_tokens < 1:
            raise APIError(400, f"max_tokens must be at least 1, got {max_tokens}")
        sampling = _sampling(
            max_tokens,
            request.temperature,
            request.top_p,
            request.seed,
            request.stop,
            self.limits.max_tokens,
        )
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        return name, sampling, messages

    def chat_prompt(self, messages: list[dict[str, str]]) -> PreparedPrompt:
        """The model's chat prompt for `messages`, checked against its length."""
        text = self.model.chat_prompt(messages)
        ids = self.model.encode(text)
        if len(ids) > self.model.max_length:
            raise _too_long(self.model, len(ids), self.model.max_length)
        return PreparedPrompt(ids, text)

    def chat(
        self, prompt: PreparedPrompt, sampling: Sampling, cancel: threading.Event | None = None
    ) -> tuple[str, str, int]:
        """The reply, its finish reason and its number of tokens."""
        budget = sampling.budget(self.model, len(prompt.ids))
        text = self._generate(sampling.request(prompt.text, budget), cancel)
        ids, finish = _finish_reason(self.model, text, budget)
        return text, finish, len(ids)

    async def chat_completions(
        self, request: ChatCompletionRequest, cancel: threading.Event | None = None
    ) -> ChatCompletionResponse:
        """`POST /v1/chat/completions` without streaming."""
        name, sampling, messages = self._chat_settings(request)
        prompt = await self.worker.call(self.chat_prompt, messages)
        text, finish, n_gen = await self.worker.call(self.chat, prompt, sampling, cancel)
        choice = ChatCompletionResponseChoice(
            index=0,
            message=ChatResponseMessage(content=text),
            finish_reason=finish,
        )
        n_prompt = len(prompt.ids)
        usage = UsageInfo.of(n_prompt, n_gen)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}", model=name, choices=[choice], usage=usage
        )

    async def stream_chat_completions(self, request: ChatCompletionRequest) -> StreamingResponse:
        """`POST /v1/chat/completions` with `stream`: deltas as server-sent events."""
        name, sampling, messages = self._chat_settings(request)
        prompt = await self.worker.call(self.chat_prompt, messages)
        ident = f"chatcmpl-{uuid.uuid4().hex}"

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            choice = ChatCompletionResponseStreamChoice(
                index=0,
                delta=delta,
                finish_reason=finish,
            )
            return _sse(ChatCompletionStreamResponse(id=ident, model=name, choices=[choice]))

        async def events() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": ""})
                budget = sampling.budget(self.model, len(prompt.ids))
                make = functools.partial(self.model.stream, sampling.request(prompt.text, budget))
                text = ""
                async for piece in self.worker.iterate(make):
                    text += piece
                    yield chunk({"content": piece})
                ids, finish = await self.worker.call(_finish_reason, self.model, text, budget)
                yield chunk({}, finish)
                if request.stream_options and request.stream_options.include_usage:
                    n_prompt = len(prompt.ids)
                    usage = UsageInfo.of(n_prompt, len(ids))
                    yield _sse(
                        ChatCompletionStreamResponse(id=ident, model=name, choices=[], usage=usage)
                    )
            except Exception as exc:
                yield _sse_error(exc)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # -- tokenizer ---------------------------------------------------------------------

    def tokenize(self, request: TokenizeRequest) -> TokenizeResponse:
        """Token ids of a prompt or of the chat prompt of `messages`."""
        self.check_model(request.model)
        if (request.prompt is None) == (request.messages is None):
            raise APIError(400, "give exactly one of prompt and messages")
        if request.messages is not None:
            messages = [{"role": m.role, "content": m.text()} for m in request.messages]
            text = self.model.chat_prompt(messages)
        else:
            text = request.prompt or ""
        ids = self.model.encode(text, add_special_tokens=request.add_special_tokens)
        strs = [self.model.decode([i]) for i in ids] if request.return_token_strs else None
        return TokenizeResponse(
            count=len(ids), max_model_len=self.model.max_length, tokens=ids, token_strs=strs
        )

    def detokenize(self, request: DetokenizeRequest) -> DetokenizeResponse:
        """Text of token ids."""
        self.check_model(request.model)
        return DetokenizeResponse(prompt=self._decode(request.tokens))


def _clamp(logprob: float | None) -> float | None:
    return None if logprob is None else max(float(logprob), MIN_LOGPROB)


def _sse(body: Any) -> str:
    return f"data: {body.model_dump_json()}\n\n"


def _sse_error(exc: Exception) -> str:
    status, message = (
        (exc.status, exc.message) if isinstance(exc, APIError) else (500, _one_line(exc))
    )
    kind = ERROR_TYPES.get(status, "InternalServerError")
    body = ErrorResponse(error=ErrorInfo(message=message, type=kind, code=status))
    return f"data: {json.dumps(body.model_dump())}\n\n"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- the application -----------------------------------------------------------------------


def create_app(
    model: TokenModel,
    model_name: str,
    *,
    tokenize_endpoints: bool = True,
    limits: ServeLimits | None = None,
) -> FastAPI:
    """The FastAPI application serving `model` as `model_name`.

    `tokenize_endpoints=False` leaves out `/tokenize` and `/detokenize`, as servers other than
    vLLM do (tests use it to exercise clients' fallbacks). `limits` caps what a request may
    ask and, with an API key, requires ``Authorization: Bearer KEY`` on every path but
    ``/health``. Every error, unexpected ones included, is OpenAI's error JSON.
    """
    server = Server(model, model_name, limits)
    app = FastAPI(title="whetstone serve", version="1")
    app.state.server = server
    key = server.limits.api_key

    if key is not None:
        # a plain ASGI middleware: the http-middleware decorator would hide disconnects
        app.add_middleware(BearerKey, key=key)
    app.add_middleware(BodyLimit, limit=server.limits.max_body_bytes, refusal=_json_refusal)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"the server failed: {type(exc).__name__}")

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems: dict[str, str] = {}
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ()) if part != "body"]
            field = loc[0] if loc else ""
            if field == "prompt":
                problems[field] = f"prompt: expected {PROMPT_FORMS}"
            elif field not in problems:
                problems[field] = f"{'.'.join(loc)}: {err.get('msg', '')}".lstrip(": ")
        return error_response(400, "; ".join(problems.values()) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {}

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        card = ModelCard(id=model_name, root=model_name, max_model_len=model.max_length)
        return ModelList(data=[card])

    @app.post("/v1/completions", response_model=CompletionResponse)
    async def completions(request: CompletionRequest, http: Request) -> Any:
        if request.stream:
            return await server.stream_completions(request)
        async with _watching(http) as cancel:
            return await server.completions(request, cancel)

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(request: ChatCompletionRequest, http: Request) -> Any:
        if request.stream:
            return await server.stream_chat_completions(request)
        async with _watching(http) as cancel:
            return await server.chat_completions(request, cancel)

    if tokenize_endpoints:

        @app.post("/tokenize", response_model=TokenizeResponse)
        async def tokenize(request: TokenizeRequest) -> TokenizeResponse:
            return await server.worker.call(server.tokenize, request)

        @app.post("/detokenize", response_model=DetokenizeResponse)
        async def detokenize(request: DetokenizeRequest) -> DetokenizeResponse:
            return await server.worker.call(server.detokenize, request)

    return app


class BearerKey:
    """Require ``Authorization: Bearer KEY`` on every path but ``/health`` (401 otherwise)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/health":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                refused = error_response(
                    401, "missing or incorrect API key (Authorization: Bearer)"
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


@asynccontextmanager
async def _watching(http: Request) -> AsyncIterator[threading.Event]:
    """An event set when the client of ``http`` disconnects, watched while the block runs."""
    cancel = threading.Event()

    async def watch() -> None:
        while not await http.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)
        cancel.set()

    watcher = asyncio.create_task(watch())
    try:
        yield cancel
    finally:
        watcher.cancel()


def _json_refusal(limit: int) -> tuple[bytes, bytes]:
    body = ErrorResponse(
        error=ErrorInfo(
            message=f"request body too large (limit {limit} bytes)",
            type=ERROR_TYPES[413],
            code=413,
        )
    )
    return b"application/json", body.model_dump_json().encode()


def serve(
    model: TokenModel,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
) -> None:
    """Serve `model` as `name` on `host:port` until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_extra("uvicorn", "serve") from exc
    app = create_app(model, name, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="info")
