"""The OpenAI-compatible app over the fake model, through FastAPI's TestClient."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from whetstone.models.base import GenerationRequest
from whetstone.models.fake import BOS, FakeModel
from whetstone.serve import create_app
from whetstone.serve.app import token_offsets

NAME = "fake-0"


@pytest.fixture(scope="module")
def model() -> FakeModel:
    return FakeModel(seed=0, max_length=64)


@pytest.fixture(scope="module")
def client(model: FakeModel) -> TestClient:
    return TestClient(create_app(model, NAME))


def complete(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/completions", json={"model": NAME, **body})
    assert response.status_code == 200, response.text
    return response.json()


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON events of a server-sent event stream, checking it ends with [DONE]."""
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assert_error(response: Any, status: int, words: str) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert set(error) >= {"message", "type", "code"}
    assert words in error["message"]


def test_models(client: TestClient, model: FakeModel) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == NAME
    assert card["object"] == "model"
    assert card["owned_by"] == "whetstone"
    assert card["max_model_len"] == model.max_length
    assert isinstance(card["created"], int)


@pytest.mark.parametrize("prompt", ["The cat sat on the mat.", "héllo wörld ✓"])
def test_echo_logprobs_of_a_text_prompt(client: TestClient, model: FakeModel, prompt: str) -> None:
    body = complete(client, prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    (choice,) = body["choices"]
    assert choice["text"] == prompt
    assert choice["index"] == 0
    lp = choice["logprobs"]
    ids = model.encode(prompt)
    expected = model.token_logprobs(ids, top_k=2)
    assert lp["token_logprobs"] == [e.logprob for e in expected]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert lp["tokens"] == [model.decode([i]) for i in ids]
    assert lp["tokens"][0] == ""  # BOS has no text
    # text_offset indexes the returned text: the first k tokens' text ends where token k starts
    for k, offset in enumerate(lp["text_offset"]):
        assert model.decode(ids[:k]).rstrip("\ufffd") == prompt[:offset]
    assert body["usage"] == {
        "prompt_tokens": len(ids),
        "completion_tokens": 0,
        "total_tokens": len(ids),
    }
    assert choice["finish_reason"] == "length"


def test_text_offset_of_ascii_tokens_spells_the_text(client: TestClient) -> None:
    prompt = "Question: 2 + 2 =  four"
    lp = complete(client, prompt=prompt, max_tokens=0, echo=True, logprobs=0)["choices"][0][
        "logprobs"
    ]
    for token, offset in zip(lp["tokens"], lp["text_offset"], strict=True):
        assert prompt[offset : offset + len(token)] == token


def test_token_id_prompts_are_used_verbatim(client: TestClient, model: FakeModel) -> None:
    prompts = [[104, 105, 33], [BOS, 120], [7]]
    body = complete(client, prompt=prompts, max_tokens=0, echo=True, logprobs=0)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    for ids, choice in zip(prompts, body["choices"], strict=True):
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(ids)  # no BOS added
        assert lp["token_logprobs"] == [e.logprob for e in model.token_logprobs(ids)]
        assert choice["text"] == model.decode(ids)
    assert body["usage"]["prompt_tokens"] == 6
    # a single prompt of ids, not nested
    single = complete(client, prompt=[104, 105], max_tokens=0, echo=True, logprobs=0)
    assert single["choices"][0]["logprobs"]["token_logprobs"][1] == model.logprobs_[104, 105]


def test_top_logprobs_have_the_requested_count(client: TestClient, model: FakeModel) -> None:
    ids = model.encode("the rain in spain")
    body = complete(
        client, prompt=ids, max_tokens=0, echo=True, logprobs=5, return_tokens_as_token_ids=True
    )
    lp = body["choices"][0]["logprobs"]
    expected = model.token_logprobs(ids, top_k=5)
    assert lp["tokens"] == [f"token_id:{i}" for i in ids]
    for entry, top in zip(expected[1:], lp["top_logprobs"][1:], strict=True):
        wanted = {f"token_id:{i}": v for i, v in entry.top.items()}
        assert len(wanted) == 5
        # the 5 most likely, plus the chosen token when it is not among them (OpenAI, vLLM)
        chosen = {f"token_id:{entry.token_id}": entry.logprob}
        assert top == wanted | chosen
        assert len(top) == 5 + (entry.token_id not in entry.top)
    text_keys = complete(client, prompt="the rain", max_tokens=0, echo=True, logprobs=3)
    for top in text_keys["choices"][0]["logprobs"]["top_logprobs"][1:]:
        assert 3 <= len(top) <= 4


def test_echo_with_generation(client: TestClient, model: FakeModel) -> None:
    prompt = "Once upon a time"
    body = complete(client, prompt=prompt, max_tokens=6, echo=True, logprobs=1, temperature=0)
    (choice,) = body["choices"]
    generated = model.generate([GenerationRequest(prompt, max_new_tokens=6)])[0]
    assert choice["text"] == prompt + generated
    gen_ids = model.encode(generated, add_special_tokens=False)  # generated text, encoded again
    ids = model.encode(prompt) + gen_ids
    lp = choice["logprobs"]
    assert lp["token_logprobs"] == [e.logprob for e in model.token_logprobs(ids)]
    n_prompt = len(model.encode(prompt))
    after = [False] * n_prompt + [True] * len(gen_ids)
    assert [o >= len(prompt) for o in lp["text_offset"]] == after
    assert body["usage"]["completion_tokens"] == len(gen_ids)

    plain = complete(client, prompt=prompt, max_tokens=6, logprobs=0, temperature=0)["choices"][0]
    assert plain["text"] == generated
    assert plain["logprobs"]["token_logprobs"] == lp["token_logprobs"][n_prompt:]
    offsets = [o - len(prompt) for o in lp["text_offset"][n_prompt:]]
    assert plain["logprobs"]["text_offset"] == offsets
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < len(generated)


def test_stop_strings(client: TestClient, model: FakeModel) -> None:
    prompt = "Once upon a time"
    full = model.generate([GenerationRequest(prompt, max_new_tokens=12)])[0]
    stop = full[4:6]
    choice = complete(client, prompt=prompt, max_tokens=12, temperature=0, stop=stop)["choices"][0]
    assert choice["text"] == full[: full.index(stop)]
    assert choice["finish_reason"] == "stop"


def test_sampling_is_seeded(client: TestClient, model: FakeModel) -> None:
    request = GenerationRequest("abc", max_new_tokens=10, temperature=0.8, seed=7)
    body = complete(client, prompt="abc", max_tokens=10, temperature=0.8, seed=7)
    assert body["choices"][0]["text"] == model.generate([request])[0]


@pytest.mark.parametrize("echo", [False, True])
def test_streaming_completions_equal_the_plain_ones(client: TestClient, echo: bool) -> None:
    body = {"model": NAME, "prompt": ["Hello there", "Good"], "max_tokens": 8, "temperature": 0}
    plain = complete(client, **body, echo=echo)
    response = client.post(
        "/v1/completions",
        json={**body, "echo": echo, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    assert all(e["object"] == "text_completion" for e in events)
    for i, choice in enumerate(plain["choices"]):
        pieces = [c for e in events for c in e["choices"] if c["index"] == i]
        assert "".join(c["text"] for c in pieces) == choice["text"]
        assert pieces[-1]["finish_reason"] == choice["finish_reason"]
    assert events[-1]["choices"] == []
    assert events[-1]["usage"] == plain["usage"]


def test_chat_and_its_stream_deliver_the_same_text(client: TestClient, model: FakeModel) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    body = {"model": NAME, "messages": messages, "max_tokens": 10, "temperature": 0}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    plain = response.json()
    assert plain["object"] == "chat.completion"
    assert plain["id"].startswith("chatcmpl-")
    (choice,) = plain["choices"]
    assert choice["message"]["role"] == "assistant"
    prompt = model.chat_prompt(messages)
    expected = model.generate([GenerationRequest(prompt, max_new_tokens=10)])[0]
    assert choice["message"]["content"] == expected
    assert choice["finish_reason"] == "length"
    assert plain["usage"]["prompt_tokens"] == len(model.encode(prompt))

    events = sse(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == expected
    assert events[-1]["choices"][0]["finish_reason"] == "length"


def test_chat_content_parts(client: TestClient) -> None:
    parts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]
    body = {"model": NAME, "max_tokens": 5, "temperature": 0}
    a = client.post(
        "/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": parts}]}
    )
    b = client.post(
        "/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "Hi!"}]}
    )
    assert a.json()["choices"][0]["message"] == b.json()["choices"][0]["message"]


def test_tokenize_and_detokenize(client: TestClient, model: FakeModel) -> None:
    body = client.post(
        "/tokenize", json={"model": NAME, "prompt": "héllo", "add_special_tokens": True}
    ).json()
    assert body["tokens"] == model.encode("héllo")
    assert body["count"] == len(body["tokens"])
    assert body["max_model_len"] == model.max_length
    bare = client.post("/tokenize", json={"prompt": "héllo", "add_special_tokens": False}).json()
    assert bare["tokens"] == model.encode("héllo", add_special_tokens=False)
    assert client.post("/tokenize", json={"prompt": ""}).json()["tokens"] == [BOS]
    chat = client.post("/tokenize", json={"messages": [{"role": "user", "content": "x"}]}).json()
    assert chat["tokens"] == model.encode(model.chat_prompt([{"role": "user", "content": "x"}]))
    back = client.post("/detokenize", json={"model": NAME, "tokens": body["tokens"]}).json()
    assert back == {"prompt": "héllo"}


def test_errors(client: TestClient) -> None:
    assert_error(client.post("/v1/completions", json={"prompt": "a", "n": 2}), 400, "n ")
    response = client.post("/v1/completions", json={"model": "gpt-9", "prompt": "a"})
    assert_error(response, 404, "gpt-9")
    assert response.json()["error"]["type"] == "NotFoundError"
    too_long = client.post("/v1/completions", json={"prompt": "x" * 80, "max_tokens": 1})
    assert_error(too_long, 400, "maximum context length is 64 tokens")
    assert_error(client.post("/v1/completions", json={"prompt": [1, "a"]}), 400, "prompt")
    assert_error(client.post("/v1/completions", json={"prompt": []}), 400, "prompt")
    assert_error(client.post("/v1/completions", json={"prompt": "a", "max_tokens": 0}), 400, "echo")
    stream = {"prompt": "a", "stream": True, "logprobs": 1}
    assert_error(client.post("/v1/completions", json=stream), 400, "streaming")
    assert_error(
        client.post("/v1/completions", json={"prompt": "a", "logprobs": 21}), 400, "logprobs"
    )
    chat = {"messages": [{"role": "user", "content": "x" * 100}]}
    assert_error(client.post("/v1/chat/completions", json=chat), 400, "maximum context length")
    assert_error(client.post("/v1/chat/completions", json={"messages": "hi"}), 400, "messages")
    assert_error(client.post("/tokenize", json={"model": "other", "prompt": "a"}), 404, "other")
    assert_error(client.get("/v1/nothing"), 404, "Not Found")


def test_a_scored_prompt_may_have_one_token_more_than_the_context(
    client: TestClient, model: FakeModel
) -> None:
    ids = [BOS, *([97] * 64)]  # 65 tokens: 64 are fed to the model, the last only scored
    body = complete(client, prompt=ids, max_tokens=0, echo=True, logprobs=0)
    assert len(body["choices"][0]["logprobs"]["tokens"]) == 65
    response = client.post(
        "/v1/completions", json={"prompt": [*ids, 97], "max_tokens": 0, "echo": True}
    )
    assert_error(response, 400, "maximum context length")


def test_without_tokenizer_endpoints(model: FakeModel) -> None:
    client = TestClient(create_app(model, NAME, tokenize_endpoints=False))
    assert_error(client.post("/tokenize", json={"prompt": "a"}), 404, "Not Found")
    assert client.get("/v1/models").status_code == 200


def _sentencepiece_like(vocab: Sequence[str]) -> Any:
    def decode(ids: Sequence[int]) -> str:
        return "".join(vocab[i] for i in ids).replace("▁", " ").removeprefix(" ")

    return decode


def test_token_offsets_survive_a_decoder_that_strips_the_first_space() -> None:
    decode = _sentencepiece_like(["▁Hello", "▁world", "!", "▁", "▁again"])
    ids = [0, 1, 2, 4, 3, 1]
    text = decode(ids)
    assert text == "Hello world! again  world"
    assert token_offsets(decode, ids) == [0, 5, 11, 12, 18, 19]
