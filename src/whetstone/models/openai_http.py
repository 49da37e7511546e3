"""A model behind any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, `whetstone serve`.

Log-likelihoods come from the legacy completions API with `echo` and `logprobs`. When the server
has vLLM's `/tokenize` endpoint, requests are encoded with the server's tokenizer exactly as the
local backends encode them (lm-evaluation-harness's `_encode_pair`) and sent as token ids, so the
numbers equal a local run of the same model; otherwise the text is sent and the continuation's
tokens are found by `text_offset`. Rolling log-likelihoods need `/tokenize` and token-id prompts.

What a server can do is probed when the model is opened. llama-cpp-python's server (found by its
`/extras/tokenize` endpoint) takes one text prompt per request, reads `max_tokens: 0` as "until the
context is full" and accepts no token ids: it is asked one prompt at a time, echoes with
`max_tokens: 1` (the extra token is dropped) and scores by text.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

import httpx

from whetstone.errors import ModelError
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
)
from whetstone.models.tokenized import ScoreWindow, cut_at_stop, rolling_windows
from whetstone.records import ModelIdentity

DEFAULT_BATCH_SIZE = 16

Prompt = str | list[int]


class ServerError(ModelError):
    """A server's refusal of a request: the HTTP status and the server's own message."""

    def __init__(self, url: str, status: int, detail: str) -> None:
        super().__init__(f"server {url}: HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class _Echo:
    """Per-token log-probabilities of an echoed prompt (generated tokens removed)."""

    tokens: list[str]
    text_offset: list[int]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]

    def score(self, positions: Sequence[int]) -> tuple[float, bool]:
        """Summed log-probability at `positions` and whether each token is the top one."""
        total, greedy = 0.0, True
        for j in positions:
            logprob = self.token_logprobs[j]
            if logprob is None:
                raise ModelError("the server gave no log-probability for a continuation token")
            total += logprob
            top = self.top_logprobs[j]
            greedy = greedy and bool(top) and logprob >= max(top.values())  # type: ignore[union-attr]
        return total, greedy


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _error_detail(response: httpx.Response) -> str:
    """The server's error message: OpenAI's `{"error": {"message"}}` and its variants."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(response.text) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if error.get(key):
                    return _one_line(str(error[key]))
        elif error:
            return _one_line(str(error))
    return _one_line(json.dumps(body))


def normalize_base_url(base_url: str) -> str:
    """`http://host:port/v1` from a URL with or without the trailing `/v1`."""
    url = base_url.strip().rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class OpenAIModel(LanguageModel):
    """A model served over HTTP with OpenAI's completions and chat completions APIs."""

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None = None,
        batch_size: int | None = None,
        timeout: float = 300,
        max_retries: int = 3,
    ) -> None:
        self.name = name
        self.base_url = normalize_base_url(base_url)
        self.root_url = self.base_url.removesuffix("/v1")
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.cache_chunk = self.batch_size  # each batch is committed as it is answered
        self.max_retries = max_retries
        digest = hashlib.sha256((self.base_url + name).encode()).hexdigest()[:16]
        self.identity = ModelIdentity(backend="openai", name=name, hash=digest, dtype="")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self.max_length: int | None = None
        """The server's context length (`max_model_len`), when it reports one."""
        self._tokenizer: bool | None = None  # whether /tokenize answers; None: not asked yet
        self._bos: int | None = None
        self._zero_max_tokens = True  # echo with max_tokens=0; else 1 and drop the extra token
        self._prompt_lists = True  # several prompts per request
        self._token_prompts = True  # prompts as token ids (else text only)
        self.dialect = "openai"
        """Which server this is, as far as its behaviour goes: "openai" or "llama.cpp"."""
        try:
            self._check_server()
            self._probe_dialect()
        except BaseException:
            self._client.close()
            raise

    # -- HTTP ------------------------------------------------------------------------------

    def _send(self, method: str, url: str, payload: Any = None, where: str = "") -> httpx.Response:
        """The response, after retrying connection errors and 5xx answers with backoff."""
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)))
            try:
                response = self._client.request(method, url, json=payload)
            except httpx.TimeoutException:
                problem = f"no answer within {self._client.timeout.read:g} s (the request deadline)"
                continue
            except httpx.TransportError as exc:
                problem = f"no answer ({type(exc).__name__}: {_one_line(str(exc)) or 'no detail'})"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                problem = f"HTTP {response.status_code}: {_error_detail(response)}"
                continue
            return response
        raise ModelError(f"server {where or url}: {problem}")

    def _post(self, url: str, payload: Any) -> Any:
        """The JSON answer of a POST; `ServerError` for a 4xx answer."""
        response = self._send("POST", url, payload)
        if response.status_code >= 400:
            raise ServerError(url, response.status_code, _error_detail(response))
        return self._json(response, url)

    @staticmethod
    def _json(response: httpx.Response, url: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ModelError(
                f"server {url}: answered with something other than JSON "
                f"({_one_line(response.text, 100)!r}); expected an OpenAI-compatible server"
            ) from exc

    def _check_server(self) -> None:
        """Ask `/v1/models`: the server must answer and list the model."""
        url = f"{self.base_url}/models"
        try:
            response = self._send("GET", url, where=self.base_url)
        except ModelError as exc:
            raise ModelError(f"{exc}; expected an OpenAI-compatible server") from None
        if response.status_code >= 400:
            raise ModelError(
                f"server {url}: HTTP {response.status_code}: {_error_detail(response)}; "
                "expected an OpenAI-compatible server"
            )
        body = self._json(response, url)
        cards = body.get("data") if isinstance(body, dict) else None
        if not isinstance(cards, list):
            raise ModelError(
                f"server {url}: the answer has no model list; expected an OpenAI-compatible server"
            )
        ids = [str(c.get("id")) for c in cards if isinstance(c, dict)]
        card = next(
            (
                c
                for c in cards
                if isinstance(c, dict) and c.get("id") in (self.name, f"{self.name}:latest")
            ),
            None,
        )
        if card is None:
            served = ", ".join(ids) if ids else "none"
            raise ModelError(
                f"server {self.base_url} does not serve model '{self.name}'; it serves: {served}"
            )
        if isinstance(card.get("max_model_len"), int):
            self.max_length = card["max_model_len"]

    def _probe_dialect(self) -> None:
        """Recognize llama-cpp-python's server by its `/extras/tokenize` endpoint (one request,
        no retry) and adapt to what it cannot do."""
        url = f"{self.root_url}/extras/tokenize"
        try:
            response = self._client.post(url, json={"model": self.name, "input": "a"})
        except httpx.HTTPError:
            return
        if response.status_code != 200:
            return
        try:
            tokens = response.json().get("tokens")
        except (ValueError, AttributeError):
            return
        if isinstance(tokens, list):
            self.dialect = "llama.cpp"
            self._prompt_lists = False  # `assert len(body.prompt) <= 1`, as HTTP 500
            self._zero_max_tokens = False  # 0 means "generate until the context is full"
            self._token_prompts = False  # the prompt must be text
            self._tokenizer = False  # tokens of text exist, but prompts cannot use them

    # -- completions -------------------------------------------------------------------------

    def _completions(
        self, prompts: Sequence[Prompt], params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One choice per prompt, several prompts per request while the server accepts lists."""
        url = f"{self.base_url}/completions"
        if len(prompts) > 1 and self._prompt_lists:
            try:
                body = self._post(url, {"model": self.name, "prompt": list(prompts), **params})
                return self._choices(body, len(prompts), url)
            except ServerError as exc:
                if exc.status not in (400, 422) or "max_tokens" in exc.detail:
                    raise
            except ModelError:  # a 5xx for a list, still there after the retries
                pass
            self._prompt_lists = False  # e.g. Ollama takes one string: try one by one
            try:
                return self._one_by_one(url, prompts, params)
            except ModelError:
                self._prompt_lists = True  # the lists were not the problem
                raise
        return self._one_by_one(url, prompts, params)

    def _one_by_one(
        self, url: str, prompts: Sequence[Prompt], params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        out = []
        for p in prompts:
            body = self._post(url, {"model": self.name, "prompt": p, **params})
            out += self._choices(body, 1, url)
        return out

    @staticmethod
    def _choices(body: Any, n: int, url: str) -> list[dict[str, Any]]:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or len(choices) != n:
            raise ModelError(f"server {url}: expected {n} choices in the answer")
        return sorted(choices, key=lambda c: int(c.get("index", 0)))

    def _echo(self, prompts: Sequence[Prompt], top: int) -> list[_Echo]:
        """Log-probabilities of every prompt token (`echo`), generating nothing when allowed."""
        params: dict[str, Any] = {"echo": True, "logprobs": top, "temperature": 0}
        while True:
            try:
                choices = self._completions(
                    prompts, {**params, "max_tokens": 0 if self._zero_max_tokens else 1}
                )
                break
            except ServerError as exc:
                if not (self._zero_max_tokens and exc.status == 400 and "max_tokens" in exc.detail):
                    raise
                self._zero_max_tokens = False
        return [self._parse_echo(c, p) for c, p in zip(choices, prompts, strict=True)]

    def _parse_echo(self, choice: dict[str, Any], prompt: Prompt) -> _Echo:
        lp = choice.get("logprobs")
        token_logprobs = lp.get("token_logprobs") if isinstance(lp, dict) else None
        # echoed logprobs start with the prompt's first token, which has none
        if not token_logprobs or token_logprobs[0] is not None:
            raise ModelError(
                f"server {self.base_url}: the completion has no logprobs of the prompt; scoring "
                "needs a server that returns them with echo=true (vLLM, whetstone serve)"
            )
        assert isinstance(lp, dict)
        if isinstance(prompt, list) and len(token_logprobs) < len(prompt):
            raise ModelError(f"server {self.base_url}: fewer logprobs than prompt tokens")
        tokens = list(lp.get("tokens") or [])
        offsets = [int(o) for o in lp.get("text_offset") or []]
        logprobs = list(lp["token_logprobs"])
        top = list(lp.get("top_logprobs") or [None] * len(logprobs))
        text = str(choice.get("text", ""))
        if isinstance(prompt, str) and len(offsets) != len(logprobs):
            raise ModelError(
                f"server {self.base_url}: the completion's logprobs have no text_offset"
            )
        first = tokens[0] if tokens else ""
        if (
            len(offsets) > 1
            and first[:1] in ("<", "[")
            and first[-1:] in (">", "]")
            and offsets[1] == offsets[0] + len(first)
            and not text.startswith(first)
        ):
            # a start token such as <s> counted in text_offset but absent from the text (vLLM)
            offsets = [offsets[0], *(max(0, o - len(first)) for o in offsets[1:])]
        if isinstance(prompt, list):
            n = len(prompt)
        else:  # generated tokens (max_tokens=1) start at or after the end of the prompt
            n = len(logprobs)
            while not self._zero_max_tokens and n > 1 and offsets[n - 1] >= len(prompt):
                n -= 1
        return _Echo(tokens[:n], offsets[:n], logprobs[:n], top[:n])

    # -- tokenizer -------------------------------------------------------------------------

    def has_tokenizer(self) -> bool:
        """Whether the server has a `/tokenize` endpoint (asked once; also learns the BOS token).

        The request carries vLLM's fields (`prompt`, `add_special_tokens`) and llama.cpp's
        (`content`, `add_special`); an endpoint that gives no tokens for "a" does not count.
        """
        if self._tokenizer is None:
            url = f"{self.root_url}/tokenize"
            response = self._send("POST", url, self._tokenize_payload("", True))
            if response.status_code in (404, 405):
                self._tokenizer = False
                return False
            if response.status_code >= 400:
                raise ServerError(url, response.status_code, _error_detail(response))
            body = self._json(response, url)
            tokens = body.get("tokens") if isinstance(body, dict) else None
            if not isinstance(tokens, list):
                raise ModelError(f"server {url}: the answer has no tokens")
            self._bos = int(tokens[0]) if tokens else None
            if self.max_length is None and isinstance(body.get("max_model_len"), int):
                self.max_length = body["max_model_len"]
            self._tokenizer = bool(self.tokenize("a", add_special_tokens=False))
        return self._tokenizer

    def _tokenize_payload(self, text: str, add_special_tokens: bool) -> dict[str, Any]:
        return {
            "model": self.name,
            "prompt": text,
            "add_special_tokens": add_special_tokens,
            "content": text,
            "add_special": add_special_tokens,
        }

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` from the server's `/tokenize`."""
        url = f"{self.root_url}/tokenize"
        body = self._post(url, self._tokenize_payload(text, add_special_tokens))
        tokens = body.get("tokens") if isinstance(body, dict) else None
        if not isinstance(tokens, list):
            raise ModelError(f"server {url}: the answer has no tokens")
        return [int(t) for t in tokens]

    def _tokenize_all(self, texts: set[tuple[str, bool]]) -> dict[tuple[str, bool], list[int]]:
        """Tokenize many strings with `batch_size` requests in flight."""
        keys = sorted(texts)
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            results = list(pool.map(lambda k: self.tokenize(*k), keys))
        return dict(zip(keys, results, strict=True))

    # -- log-likelihood ----------------------------------------------------------------------

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """Score each continuation given its context with echoed prompt logprobs."""
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        by_ids: list[int] = []
        by_text: list[int] = []
        if self.has_tokenizer():
            for i, r in enumerate(requests):
                (by_text if not r.context and self._bos is None else by_ids).append(i)
        else:
            by_text = list(range(len(requests)))
        if by_ids:
            windows = self._windows([requests[i] for i in by_ids])
            self._score_windows(by_ids, windows, results, progress)
        if by_text:
            self._score_texts(by_text, requests, results, progress)
        return results  # type: ignore[return-value]

    def _windows(self, requests: Sequence[LoglikelihoodRequest]) -> list[ScoreWindow]:
        """Token windows split and truncated as `TokenizedBackend.loglikelihood_window`."""
        pairs = [_move_spaces(r.context, r.continuation) for r in requests]
        needed: set[tuple[str, bool]] = set()
        for r, (context, continuation) in zip(requests, pairs, strict=True):
            if r.context:
                needed |= {(context + continuation, True), (context, True)}
            else:
                needed.add((continuation, False))
        ids = self._tokenize_all(needed)
        windows = []
        for r, (context, continuation) in zip(requests, pairs, strict=True):
            if r.context:
                whole, ctx = ids[(context + continuation, True)], ids[(context, True)]
                cont = whole[len(ctx) :]
            else:
                ctx, cont = [self._bos], ids[(continuation, False)]  # type: ignore[list-item]
            tokens = ctx + cont
            if self.max_length:
                tokens = tokens[-(self.max_length + 1) :]
            # a continuation longer than the model: its first tokens have no context to score
            windows.append(ScoreWindow(tuple(tokens), min(len(cont), len(tokens) - 1)))
        return windows

    def _score_windows(
        self,
        owners: list[int],
        windows: Sequence[ScoreWindow],
        results: list[LoglikelihoodResult | None],
        progress: Progress | None,
    ) -> None:
        for lo in range(0, len(windows), self.batch_size):
            batch = windows[lo : lo + self.batch_size]
            echoes = self._echo([list(w.tokens) for w in batch], top=1)
            for i, w, echo in zip(owners[lo : lo + len(batch)], batch, echoes, strict=True):
                n = len(echo.token_logprobs)
                logprob, greedy = echo.score(range(n - w.n_targets, n))
                results[i] = LoglikelihoodResult(logprob, greedy, w.n_targets)
            if progress:
                progress(len(batch))

    def _score_texts(
        self,
        owners: list[int],
        requests: Sequence[LoglikelihoodRequest],
        results: list[LoglikelihoodResult | None],
        progress: Progress | None,
    ) -> None:
        """Score by text: the continuation is the tokens at or after the context's end."""
        for lo in range(0, len(owners), self.batch_size):
            batch = owners[lo : lo + self.batch_size]
            pairs = [_move_spaces(requests[i].context, requests[i].continuation) for i in batch]
            echoes = self._echo([c + x for c, x in pairs], top=1)
            for i, (context, _), echo in zip(batch, pairs, echoes, strict=True):
                positions = [
                    j
                    for j, offset in enumerate(echo.text_offset)
                    if j > 0 and offset >= len(context)
                ]
                logprob, greedy = echo.score(positions)
                results[i] = LoglikelihoodResult(logprob, greedy, len(positions))
            if progress:
                progress(len(batch))

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """Score whole documents in windows built from the server's tokenizer."""
        if self.dialect == "llama.cpp":
            raise ModelError(
                f"server {self.root_url} (llama.cpp's server) cannot score perplexity tasks: "
                "rolling windows are sent as token ids and it takes text prompts only; score "
                "the same .gguf file locally (--model FILE.gguf) or serve it with whetstone serve"
            )
        if not self.has_tokenizer():
            raise ModelError(
                f"server {self.root_url} has no /tokenize endpoint: rolling log-likelihood "
                "(perplexity) needs the server's tokenizer (vLLM and whetstone serve have it)"
            )
        if self._bos is None:
            raise ModelError(
                f"server {self.root_url}: tokenizing the empty string with special tokens gives "
                "no start token, and rolling windows start with one"
            )
        docs = self._tokenize_all({(r.text, False) for r in requests})
        owners: list[int] = []
        windows: list[ScoreWindow] = []
        counts = []
        for i, r in enumerate(requests):
            tokens = docs[(r.text, False)]
            max_length = min(r.max_length, self.max_length or r.max_length)
            doc = rolling_windows(tokens, self._bos, max_length, min(r.stride, max_length))
            windows += doc
            owners += [i] * len(doc)
            counts.append(len(tokens))
        totals = [0.0] * len(requests)
        remaining = [0] * len(requests)
        for owner in owners:
            remaining[owner] += 1
        empty = sum(1 for n in remaining if n == 0)
        if progress and empty:  # documents without tokens are done at once
            progress(empty)
        for lo in range(0, len(windows), self.batch_size):
            batch = windows[lo : lo + self.batch_size]
            echoes = self._echo([list(w.tokens) for w in batch], top=1)
            finished = 0
            for owner, w, echo in zip(owners[lo : lo + len(batch)], batch, echoes, strict=True):
                n = len(echo.token_logprobs)
                totals[owner] += echo.score(range(n - w.n_targets, n))[0]
                remaining[owner] -= 1
                finished += remaining[owner] == 0
            if progress and finished:
                progress(finished)
        return [RollingResult(t, c) for t, c in zip(totals, counts, strict=True)]

    # -- generation --------------------------------------------------------------------------

    def _sampling(self, request: GenerationRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        return params

    def _generate_one(self, request: GenerationRequest) -> str:
        url = f"{self.base_url}/completions"
        payload = {"model": self.name, "prompt": request.prompt, **self._sampling(request)}
        try:
            body = self._post(url, payload)
        except ServerError as exc:
            if not (request.stop and exc.status == 400 and "stop" in exc.detail.lower()):
                raise
            payload.pop("stop")  # too many stop strings for this server: cut them here
            body = self._post(url, payload)
        text = str(self._choices(body, 1, url)[0].get("text") or "")
        return cut_at_stop(text, request.stop)[0]

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Generate with `batch_size` requests in flight; results keep the order of requests."""
        return self._parallel(self._generate_one, requests, progress)

    def _parallel(
        self,
        fn: Callable[[GenerationRequest], str],
        requests: Sequence[GenerationRequest],
        progress: Progress | None,
    ) -> list[str]:
        outputs: list[str] = [""] * len(requests)
        with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
            futures = {pool.submit(fn, r): i for i, r in enumerate(requests)}
            for future in as_completed(futures):
                outputs[futures[future]] = future.result()
                if progress:
                    progress(1)
        return outputs

    # -- chat --------------------------------------------------------------------------------

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """Not available: the server applies its own chat template; use `chat`."""
        raise ModelError(
            f"model '{self.name}' is served over HTTP: its chat template is the server's; "
            "use chat() or stream_chat()"
        )

    def chat(self, messages: Sequence[dict[str, str]], request: GenerationRequest) -> str:
        """The assistant's reply to `messages` (`request.prompt` is ignored)."""
        url = f"{self.base_url}/chat/completions"
        body = self._post(
            url, {"model": self.name, "messages": list(messages), **self._sampling(request)}
        )
        message = self._choices(body, 1, url)[0].get("message") or {}
        return cut_at_stop(str(message.get("content") or ""), request.stop)[0]

    def stream_chat(
        self, messages: Sequence[dict[str, str]], request: GenerationRequest
    ) -> Iterator[str]:
        """The reply to `messages` piece by piece, from the server's SSE stream."""
        url = f"{self.base_url}/chat/completions"
        payload = {
            "model": self.name,
            "messages": list(messages),
            "stream": True,
            **self._sampling(request),
        }
        problem, started = "", False
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(8.0, 0.25 * 2 ** (attempt - 1)))
            try:
                with self._client.stream("POST", url, json=payload) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code < 500:
                            raise ServerError(url, response.status_code, _error_detail(response))
                        problem = f"HTTP {response.status_code}: {_error_detail(response)}"
                        continue
                    for piece in self._sse_text(response, url, request.stop):
                        started = True
                        yield piece
                    return
            except httpx.TransportError as exc:
                problem = f"no answer ({type(exc).__name__}: {_one_line(str(exc)) or 'no detail'})"
                if started:  # part of the reply is out: a retry would repeat it
                    break
        raise ModelError(f"server {url}: {problem}")

    @staticmethod
    def _sse_text(response: httpx.Response, url: str, stop: Sequence[str]) -> Iterator[str]:
        text, emitted = "", 0
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            event = json.loads(data)
            if "error" in event:
                error = event["error"]
                detail = error.get("message", error) if isinstance(error, dict) else error
                raise ModelError(f"server {url}: {_one_line(str(detail))}")
            for choice in event.get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
            cut, stopped = cut_at_stop(text, stop)
            if len(cut) > emitted:
                yield cut[emitted:]
                emitted = len(cut)
            if stopped:
                return

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _move_spaces(context: str, continuation: str) -> tuple[str, str]:
    """Trailing spaces of the context moved to the continuation, as lm-evaluation-harness does."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation
