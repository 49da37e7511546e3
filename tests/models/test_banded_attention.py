"""Banded sliding-window attention against transformers' own SDPA path on a random Gemma 3."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from whetstone.models import banded_attention  # noqa: E402
from whetstone.models.banded_attention import install, right_padded_scoring  # noqa: E402

WINDOW = 8


def tiny_gemma(attn: str = "sdpa"):
    """Two sliding layers and one full layer, window 8, GQA (4 query heads, 1 key head)."""
    config = transformers.Gemma3TextConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=256,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config).eval()
    with torch.no_grad():  # larger weights make attention patterns sharp, so errors show
        for p in model.parameters():
            p.mul_(4.0)
    return model


@pytest.fixture
def small_blocks(monkeypatch):
    """Query blocks of 4 with a window of 8 (bands start mid-block and span several blocks);
    yields the key lengths every SDPA call of the banded path saw."""
    monkeypatch.setattr(banded_attention, "QUERY_BLOCK", 4)
    seen: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, **kwargs):
        seen.append(key.shape[2])
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(banded_attention.F, "scaled_dot_product_attention", spy)
    return seen


@torch.no_grad()
def test_banded_matches_eager_on_one_sequence(small_blocks):
    reference = tiny_gemma("eager")
    model = tiny_gemma()
    assert install(model)
    ids = torch.randint(0, 97, (1, 45), generator=torch.Generator().manual_seed(1))
    want = reference(input_ids=ids).logits
    with right_padded_scoring():
        got = model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # the banded path ran: sliding layers met at most a block plus a window of keys
    assert small_blocks.count(45) == 1 and max(small_blocks[:-1]) <= 4 + WINDOW - 1
    # the window matters here: attending to everything gives other logits
    full = tiny_gemma("eager")
    full.config.sliding_window = 10**6
    for layer in full.model.layers:
        layer.self_attn.sliding_window = None
    assert not torch.allclose(full(input_ids=ids).logits, want, atol=1e-2)


@torch.no_grad()
def test_right_padded_rows_match_each_row_alone(small_blocks):
    model = tiny_gemma()
    install(model)
    gen = torch.Generator().manual_seed(2)
    lengths = [45, 30, 9, 3]
    rows = [torch.randint(1, 97, (n,), generator=gen) for n in lengths]
    batch = torch.zeros((len(rows), max(lengths)), dtype=torch.long)
    for b, r in enumerate(rows):
        batch[b, : len(r)] = r
    with right_padded_scoring():
        together = model(input_ids=batch).logits
    reference = tiny_gemma("sdpa")
    for b, r in enumerate(rows):
        alone = reference(input_ids=r[None]).logits[0]
        torch.testing.assert_close(together[b, : len(r)], alone, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_outside_scoring_the_model_keeps_its_sdpa_path():
    # left padding with an attention mask, as generation uses it
    model = tiny_gemma()
    install(model)
    reference = tiny_gemma("sdpa")
    ids = torch.randint(1, 97, (2, 20), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    ids[1, :6] = 0
    got = model(input_ids=ids, attention_mask=mask).logits
    want = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, 6:], want[1, 6:], atol=1e-5, rtol=1e-5)
    out = model.generate(ids[:1], max_new_tokens=12, do_sample=False)
    assert out.tolist() == reference.generate(ids[:1], max_new_tokens=12, do_sample=False).tolist()


def test_models_without_a_sliding_window_are_left_alone():
    config = transformers.LlamaConfig(
        vocab_size=50,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        attn_implementation="sdpa",
    )
    model = transformers.LlamaForCausalLM(config)
    assert not install(model)
    assert model.config._attn_implementation == "sdpa"
