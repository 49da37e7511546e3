"""`whetstone serve` under hostile requests: a bearer key when configured, a max_tokens cap, a
body limit, and sampling values that used to give plain-text 500s, all answered in OpenAI's
error JSON."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from whetstone.models.fake import FakeModel
from whetstone.serve import create_app
from whetstone.serve.app import ServeLimits

NAME = "fake-0"


def client(**limits: Any) -> TestClient:
    return TestClient(
        create_app(FakeModel(seed=0), NAME, limits=ServeLimits(**limits)),
        raise_server_exceptions=False,
    )


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == status and body["type"]
    return str(body["message"])


def test_a_configured_key_is_required_everywhere_but_health() -> None:
    c = client(api_key="s3cret-key")
    body = {"model": NAME, "prompt": "Hello", "max_tokens": 3}
    assert "API key" in error(c.post("/v1/completions", json=body), 401)
    wrong = {"authorization": "Bearer nope"}
    assert "API key" in error(c.post("/v1/completions", json=body, headers=wrong), 401)
    assert "API key" in error(c.get("/v1/models"), 401)
    ok = c.post("/v1/completions", json=body, headers={"authorization": "Bearer s3cret-key"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["text"] is not None
    assert c.get("/health").status_code == 200


def test_max_tokens_is_capped() -> None:
    c = client(max_tokens=50)
    body = {"model": NAME, "prompt": "Hello", "max_tokens": 5_000_000}
    assert "at most 50" in error(c.post("/v1/completions", json=body), 400)
    chat = {"model": NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 51}
    assert "at most 50" in error(c.post("/v1/chat/completions", json=chat), 400)
    # with no max_tokens, a chat reply stops at the cap (its usage counts the reply encoded
    # again, which for the byte-level fake model can exceed the bytes generated); greedy, since
    # a sampled reply with a random seed may end by itself before the cap
    messages = [{"role": "user", "content": "hi"}]
    greedy = {"model": NAME, "messages": messages, "temperature": 0}
    free = c.post("/v1/chat/completions", json=greedy)
    assert free.status_code == 200 and free.json()["choices"][0]["finish_reason"] == "length"


def test_a_body_over_the_limit_is_413_json() -> None:
    c = client(max_body_bytes=10_000)
    body = {"model": NAME, "prompt": "x" * 20_000, "max_tokens": 1}
    assert "too large" in error(c.post("/v1/completions", json=body), 413)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("seed", -1, "seed must be"),
        ("temperature", 1e-300, "temperature must be"),
        ("temperature", float("nan"), "temperature must be"),
        ("temperature", 7.0, "temperature must be"),
        ("top_p", float("nan"), "top_p must be"),
    ],
)
def test_bad_sampling_values_are_400_json(field: str, value: float, words: str) -> None:
    import json

    c = client()
    body = json.dumps({"model": NAME, "prompt": "Hello", "max_tokens": 3, field: value})
    sent = c.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert words in error(sent, 400)


def test_an_unexpected_failure_is_500_json(monkeypatch: pytest.MonkeyPatch) -> None:
    c = client()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(FakeModel, "stream", broken)
    body = {"model": NAME, "prompt": "Hello", "max_tokens": 3}
    assert "RuntimeError" in error(c.post("/v1/completions", json=body), 500)


class SlowModel(FakeModel):
    """Five milliseconds per generated piece, and never an end of text: 4000 tokens take 20 s."""

    def stream(self, request: Any) -> Any:
        import time

        for _ in range(request.max_new_tokens):
            time.sleep(0.005)
            yield "a"


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_request_whose_client_left_stops_generating(path: str) -> None:
    import time

    import httpx

    from tests.serve.test_openai_http import running

    long = {"model": NAME, "max_tokens": 4000, "temperature": 0}
    long |= (
        {"prompt": "Hi"}
        if "chat" not in path
        else {"messages": [{"role": "user", "content": "Hi"}]}
    )
    with running(create_app(SlowModel(seed=0), NAME)) as base:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}{path}", json=long, timeout=1.0)
        started = time.monotonic()
        short = httpx.post(f"{base}{path}", json={**long, "max_tokens": 5}, timeout=60)
        assert short.status_code == 200
        assert time.monotonic() - started < 5  # not the 19 s the abandoned request had left
