"""The HTTP client backend against `whetstone serve` running on a real port.

The fake model behind the server answers the same requests locally, so every number that comes
over HTTP is compared with the local one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from whetstone.errors import ModelError
from whetstone.models.base import (
    GenerationRequest,
    LoglikelihoodRequest,
    RollingRequest,
    TokenModel,
)
from whetstone.models.fake import FakeModel
from whetstone.models.openai_http import OpenAIModel, normalize_base_url
from whetstone.serve import create_app

NAME = "fake-1"

REQUESTS = [
    LoglikelihoodRequest("The cat sat on the", " mat"),
    LoglikelihoodRequest("The cat sat on the", " hat"),
    LoglikelihoodRequest("Question: what is 2 + 2?\nAnswer: ", "4"),
    LoglikelihoodRequest("Trailing spaces   ", "  then text"),
    LoglikelihoodRequest("", "An empty context"),
    LoglikelihoodRequest("héllo", " wörld ✓"),
    LoglikelihoodRequest("e", " "),
    LoglikelihoodRequest("A", "n"),
]

DOCS = [
    "",
    "Short.",
    "A document long enough to need several windows of sixteen tokens each, with ünïcödé too.",
    "x" * 40,
]


@contextmanager
def running(app: FastAPI, lifespan: str = "off") -> Iterator[str]:
    """Serve `app` with uvicorn on a free local port in a background thread (with its
    lifespan, background workers included, when ``lifespan="on"``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def fake() -> FakeModel:
    return FakeModel(seed=1)


@pytest.fixture(scope="module")
def url(fake: FakeModel) -> Iterator[str]:
    with running(create_app(fake, NAME)) as base:
        yield base


@pytest.fixture(scope="module")
def url_without_tokenizer(fake: FakeModel) -> Iterator[str]:
    with running(create_app(fake, NAME, tokenize_endpoints=False)) as base:
        yield base


@pytest.fixture
def connect() -> Iterator[Callable[..., OpenAIModel]]:
    """`OpenAIModel(...)`, closed when the test ends."""
    models: list[OpenAIModel] = []

    def make(*args: Any, **kwargs: Any) -> OpenAIModel:
        models.append(OpenAIModel(*args, **kwargs))
        return models[-1]

    yield make
    for m in models:
        m.close()


def assert_same_loglikelihoods(remote: Any, local: Any) -> None:
    assert len(remote) == len(local)
    for r, x in zip(remote, local, strict=True):
        assert r.logprob == pytest.approx(x.logprob, abs=1e-9)
        assert (r.is_greedy, r.n_tokens) == (x.is_greedy, x.n_tokens)


def test_base_url_normalization() -> None:
    assert normalize_base_url("http://h:1") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/v1/") == "http://h:1/v1"
    assert normalize_base_url("http://h:1/") == "http://h:1/v1"


def test_identity_and_length(
    url: str, fake: FakeModel, connect: Callable[..., OpenAIModel]
) -> None:
    model = connect(NAME, base_url=url)
    assert model.identity.backend == "openai"
    assert model.identity.name == NAME
    assert len(model.identity.hash) == 16
    assert model.identity == connect(NAME, base_url=url + "/v1/").identity
    assert model.max_length == fake.max_length


@pytest.mark.parametrize("tokenizer", [True, False], ids=["tokenize", "text_offset"])
def test_loglikelihood_equals_the_local_model(
    fake: FakeModel,
    url: str,
    url_without_tokenizer: str,
    tokenizer: bool,
    connect: Callable[..., OpenAIModel],
) -> None:
    model = connect(NAME, base_url=url if tokenizer else url_without_tokenizer, batch_size=3)
    done: list[int] = []
    remote = model.loglikelihood(REQUESTS, progress=done.append)
    assert model.has_tokenizer() is tokenizer
    assert_same_loglikelihoods(remote, fake.loglikelihood(REQUESTS))
    assert sum(done) == len(REQUESTS)
    assert any(r.is_greedy for r in remote) and not all(r.is_greedy for r in remote)


def test_greedy_continuations_are_recognized(
    fake: FakeModel, url: str, connect: Callable[..., OpenAIModel]
) -> None:
    context = "The end"
    greedy = fake.generate([GenerationRequest(context, max_new_tokens=5)])[0]
    assert greedy.isascii() and len(greedy) == 5
    model = connect(NAME, base_url=url)
    requests = [LoglikelihoodRequest(context, greedy), LoglikelihoodRequest(context, greedy[:4])]
    for result in model.loglikelihood(requests):
        assert result.is_greedy
    (other,) = model.loglikelihood([LoglikelihoodRequest(context, greedy[:4] + "z")])
    assert not other.is_greedy


def test_long_contexts_are_truncated_as_the_local_model_does(
    connect: Callable[..., OpenAIModel],
) -> None:
    short = FakeModel(seed=2, max_length=24)
    requests = [LoglikelihoodRequest("word " * 20, "end"), LoglikelihoodRequest("ab" * 6, "cd")]
    with running(create_app(short, "short")) as base:
        model = connect("short", base_url=base)
        assert model.max_length == 24
        assert_same_loglikelihoods(model.loglikelihood(requests), short.loglikelihood(requests))
        docs = [RollingRequest("z" * 70, max_length=4096, stride=4096)]
        (remote,) = model.loglikelihood_rolling(docs)
        (local,) = short.loglikelihood_rolling(docs)
        assert remote.logprob == pytest.approx(local.logprob, abs=1e-9)


@pytest.mark.parametrize("stride", [16, 5])
def test_rolling_equals_the_local_model(
    fake: FakeModel, url: str, stride: int, connect: Callable[..., OpenAIModel]
) -> None:
    requests = [RollingRequest(text, max_length=16, stride=stride) for text in DOCS]
    model = connect(NAME, base_url=url, batch_size=4)
    done: list[int] = []
    remote = model.loglikelihood_rolling(requests, progress=done.append)
    local = fake.loglikelihood_rolling(requests)
    for r, x in zip(remote, local, strict=True):
        assert r.logprob == pytest.approx(x.logprob, abs=1e-9)
        assert r.n_tokens == x.n_tokens
    assert sum(done) == len(requests)


def test_rolling_needs_the_tokenizer_endpoint(
    url_without_tokenizer: str, connect: Callable[..., OpenAIModel]
) -> None:
    model = connect(NAME, base_url=url_without_tokenizer)
    with pytest.raises(ModelError, match="/tokenize"):
        model.loglikelihood_rolling([RollingRequest("abc", 16, 16)])


def test_generate_equals_the_local_model(
    fake: FakeModel, url: str, connect: Callable[..., OpenAIModel]
) -> None:
    full = fake.generate([GenerationRequest("Once upon", max_new_tokens=12)])[0]
    requests = [
        GenerationRequest("Once upon", max_new_tokens=12),
        GenerationRequest("Once upon", max_new_tokens=12, stop=(full[5:7], "never")),
        GenerationRequest("Q: 1+1?\nA:", max_new_tokens=8, temperature=0.7, seed=3),
        GenerationRequest("Q: 1+1?\nA:", max_new_tokens=8, temperature=0.7, seed=4, top_p=0.9),
        GenerationRequest("héllo", max_new_tokens=3),
    ]
    model = connect(NAME, base_url=url, batch_size=2)
    done: list[int] = []
    assert model.generate(requests, progress=done.append) == fake.generate(requests)
    assert sum(done) == len(requests)


def test_chat_and_stream_chat(
    fake: FakeModel, url: str, connect: Callable[..., OpenAIModel]
) -> None:
    messages = [{"role": "user", "content": "Tell me a story."}]
    request = GenerationRequest("", max_new_tokens=15)
    expected = fake.generate([GenerationRequest(fake.chat_prompt(messages), max_new_tokens=15)])[0]
    model = connect(NAME, base_url=url)
    assert model.chat(messages, request) == expected
    pieces = list(model.stream_chat(messages, request))
    assert "".join(pieces) == expected
    assert len(pieces) > 1
    stop = GenerationRequest("", max_new_tokens=15, stop=(expected[3:5],))
    assert "".join(model.stream_chat(messages, stop)) == expected[: expected.index(expected[3:5])]
    with pytest.raises(ModelError, match="chat"):
        model.chat_prompt(messages)


def test_a_server_that_does_not_answer(connect: Callable[..., OpenAIModel]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(ModelError) as info:
        connect("m", base_url=base, max_retries=1)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"server {base}: no answer (ConnectError")
    assert message.endswith("expected an OpenAI-compatible server")


def test_an_unknown_model_names_the_served_ones(
    url: str, connect: Callable[..., OpenAIModel]
) -> None:
    with pytest.raises(ModelError, match=f"'gpt-9'.*it serves: {NAME}"):
        connect("gpt-9", base_url=url)


def _recording_app(model: TokenModel, seen: list[Request]) -> FastAPI:
    app = create_app(model, NAME)

    @app.middleware("http")
    async def record(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen.append(request)
        return await call_next(request)

    return app


def test_bearer_token(fake: FakeModel, connect: Callable[..., OpenAIModel]) -> None:
    seen: list[Request] = []
    with running(_recording_app(fake, seen)) as base:
        connect(NAME, base_url=base, api_key="sk-test").generate([GenerationRequest("a", 2)])
        assert seen and all(r.headers["authorization"] == "Bearer sk-test" for r in seen)
        seen.clear()
        connect(NAME, base_url=base).generate([GenerationRequest("a", 2)])
        assert seen and all("authorization" not in r.headers for r in seen)


def _strict_app(model: TokenModel, failures: list[int]) -> FastAPI:
    """A server that refuses max_tokens=0 and fails its first completion with a 503."""
    app = create_app(model, NAME)

    @app.middleware("http")
    async def refuse(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/v1/completions":
            if not failures:
                failures.append(503)
                return JSONResponse({"error": {"message": "busy", "code": 503}}, status_code=503)
            body = await request.json()
            if body.get("max_tokens") == 0:
                message = "max_tokens must be at least 1, got 0."
                return JSONResponse({"error": {"message": message, "code": 400}}, status_code=400)
        return await call_next(request)

    return app


@pytest.mark.parametrize("tokenize", [True, False])
def test_servers_that_refuse_max_tokens_zero(
    fake: FakeModel, tokenize: bool, connect: Callable[..., OpenAIModel]
) -> None:
    failures: list[int] = []
    with running(_strict_app(fake, failures)) as base:
        model = connect(NAME, base_url=base, batch_size=4)
        if not tokenize:
            model._tokenizer = False  # as if the server had no /tokenize
        assert_same_loglikelihoods(model.loglikelihood(REQUESTS), fake.loglikelihood(REQUESTS))
        assert failures == [503]  # retried
        if tokenize:
            rolling = [RollingRequest(DOCS[2], 16, 16)]
            (remote,) = model.loglikelihood_rolling(rolling)
            assert remote.logprob == pytest.approx(fake.loglikelihood_rolling(rolling)[0].logprob)


def test_a_bad_request_is_one_line_naming_the_url(
    url: str, connect: Callable[..., OpenAIModel]
) -> None:
    model = connect(NAME, base_url=url)
    with pytest.raises(ModelError) as info:
        model.generate([GenerationRequest("x" * 3000, max_new_tokens=1)])
    message = str(info.value)
    assert message.startswith(f"server {url}/v1/completions: HTTP 400: ")
    assert "maximum context length" in message and "\n" not in message


# -- a real transformers model ---------------------------------------------------------------


def _tiny_hf_model(folder: Path) -> None:
    """A random 2-layer GPT-2 with a byte-level BPE tokenizer that adds only BOS."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        "The quick brown fox jumps over the lazy dog.",
        "The cat sat on the mat, and the dog sat on the log.",
        "Question: what is the capital of France? Answer: Paris.",
    ] * 10
    tok.train_from_iterator(corpus, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=48,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=bos,
        eos_token_id=tok.token_to_id("</s>"),
    )
    GPT2LMHeadModel(config).save_pretrained(folder)


@pytest.mark.slow
def test_a_transformers_model_over_http(
    tmp_path: Path, connect: Callable[..., OpenAIModel]
) -> None:
    pytest.importorskip("transformers")
    from whetstone.models.hf import HFModel

    _tiny_hf_model(tmp_path)
    local = HFModel(tmp_path, device="cpu", dtype="float32")
    assert local.encode("The")[0] == local.prefix_token_id
    requests = [
        LoglikelihoodRequest("The quick brown fox", " jumps"),
        LoglikelihoodRequest("Question: what is the capital of France? Answer:", " Paris"),
        LoglikelihoodRequest("The cat sat on the ", "mat"),
        LoglikelihoodRequest("", "The dog"),
        LoglikelihoodRequest("zebra", " 😀 unseen"),
    ]
    rolling = [RollingRequest("The quick brown fox jumps over the lazy dog. " * 6, 48, 48)]
    expected = local.loglikelihood(requests)
    expected_rolling = local.loglikelihood_rolling(rolling)
    for tokenize in (True, False):
        with running(create_app(local, "tiny", tokenize_endpoints=tokenize)) as base:
            model = connect("tiny", base_url=base)
            for r, x in zip(model.loglikelihood(requests), expected, strict=True):
                assert r.logprob == pytest.approx(x.logprob, abs=1e-5)
                assert (r.is_greedy, r.n_tokens) == (x.is_greedy, x.n_tokens)
            if tokenize:
                (doc,) = model.loglikelihood_rolling(rolling)
                assert doc.logprob == pytest.approx(expected_rolling[0].logprob, abs=1e-5)
                assert doc.n_tokens == expected_rolling[0].n_tokens > 48


def test_echo_answers_from_other_servers(url: str, connect: Callable[..., OpenAIModel]) -> None:
    model = connect(NAME, base_url=url)
    # vLLM counts the text of <s> in text_offset although the text does not hold it
    choice = {
        "text": "Hi there",
        "logprobs": {
            "tokens": ["<s>", "Hi", " there"],
            "text_offset": [0, 3, 5],
            "token_logprobs": [None, -1.0, -2.0],
            "top_logprobs": [None, {"Hi": -1.0}, {" here": -0.5, " there": -2.0}],
        },
    }
    echo = model._parse_echo(choice, "Hi there")
    assert echo.text_offset == [0, 0, 2]
    assert echo.score([2]) == (-2.0, False)
    assert echo.score([1]) == (-1.0, True)
    # a server that ignores echo gives logprobs of generated tokens only
    ignored = {"text": "!", "logprobs": {"tokens": ["!"], "token_logprobs": [-0.1]}}
    with pytest.raises(ModelError, match="echo"):
        model._parse_echo(ignored, "Hi there")
    with pytest.raises(ModelError, match="echo"):
        model._parse_echo({"text": "!", "logprobs": None}, [1, 2])


def _llama_like_app(model: TokenModel, seen: list[dict[str, Any]]) -> FastAPI:
    """A server that behaves like llama-cpp-python's where it matters: `/extras/tokenize`,
    HTTP 500 for a list of prompts, text prompts only, and max_tokens=0 meaning "no limit"."""
    app = create_app(model, NAME, tokenize_endpoints=False)

    @app.post("/extras/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"tokens": model.encode(body["input"])})

    @app.middleware("http")
    async def llama(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path == "/v1/completions":
            body = await request.json()
            seen.append(body)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and (len(prompt) > 1 or not isinstance(prompt[0], str)):
                return JSONResponse({"error": {"message": ""}}, status_code=500)
            assert body.get("max_tokens") != 0, "would generate until the context is full"
        return await call_next(request)

    return app


def test_a_llama_cpp_like_server_is_recognized_and_asked_what_it_can_answer(
    fake: FakeModel, connect: Callable[..., OpenAIModel]
) -> None:
    seen: list[dict[str, Any]] = []
    with running(_llama_like_app(fake, seen)) as base:
        model = connect(NAME, base_url=base)
        assert model.dialect == "llama.cpp"
        remote = model.loglikelihood(REQUESTS[:4])
        for r, x in zip(remote, fake.loglikelihood(REQUESTS[:4]), strict=True):
            assert r.logprob == pytest.approx(x.logprob, abs=1e-9)
        assert seen and all(isinstance(b["prompt"], str) and b["max_tokens"] == 1 for b in seen)
        with pytest.raises(ModelError, match="cannot score perplexity"):
            model.loglikelihood_rolling([RollingRequest(DOCS[2], 16, 16)])


def test_a_server_that_fails_lists_of_prompts_with_a_500_is_asked_one_by_one(
    fake: FakeModel, connect: Callable[..., OpenAIModel]
) -> None:
    seen: list[dict[str, Any]] = []
    app = _llama_like_app(fake, seen)
    app.router.routes = [
        r for r in app.router.routes if getattr(r, "path", "") != "/extras/tokenize"
    ]
    with running(app) as base:
        model = connect(NAME, base_url=base, max_retries=0)
        model._zero_max_tokens = False
        assert model.dialect == "openai"
        model._tokenizer = False
        texts = model.generate([GenerationRequest("a", 2), GenerationRequest("b", 2)])
        assert len(texts) == 2
        remote = model.loglikelihood(REQUESTS[:3])
        assert not model._prompt_lists
        for r, x in zip(remote, fake.loglikelihood(REQUESTS[:3]), strict=True):
            assert r.logprob == pytest.approx(x.logprob, abs=1e-9)
