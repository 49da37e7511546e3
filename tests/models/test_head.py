"""The blocked LM head and its online log-sum-exp, against torch's own log-softmax."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from whetstone.models.hf_scoring import (  # noqa: E402
    VocabHead,
    head_scores,
    head_shape,
    logits_as_blocks,
)


def reference(weight, bias, softcap, hidden, targets):
    """Whole-vocabulary logits, log-softmax and argmax in float64."""
    logits = hidden.double() @ weight.double().T
    if bias is not None:
        logits = logits + bias.double()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, targets[:, None])[:, 0], logits.argmax(dim=-1) == targets


@pytest.mark.parametrize(
    ("vocab", "block", "positions", "with_bias", "softcap"),
    [
        (1000, 4096, 7, False, None),  # one block
        (1000, 96, 7, False, None),  # the last block is short
        (1000, 96, 64, True, None),  # one pass for every position
        (1000, 333, 5, True, 30.0),  # Gemma 2's final soft-capping
    ],
)
def test_blocked_head_matches_log_softmax(vocab, block, positions, with_bias, softcap):
    gen = torch.Generator().manual_seed(vocab + block)
    weight = torch.randn(vocab, 32, generator=gen)
    bias = torch.randn(vocab, generator=gen) if with_bias else None
    hidden = torch.randn(40, 32, generator=gen) * 3
    targets = torch.randint(0, vocab, (40,), generator=gen)
    # some targets are the argmax, so `greedy` is tested both ways
    full = hidden @ weight.T + (bias if bias is not None else 0)
    targets[::3] = full[::3].argmax(dim=-1)
    head = VocabHead(weight, bias, softcap, block)
    lp, greedy = head_scores(head.blocks, hidden, targets, positions)
    want_lp, want_greedy = reference(weight, bias, softcap, hidden, targets)
    assert lp.dtype == torch.float64
    torch.testing.assert_close(lp, want_lp, atol=2e-5, rtol=1e-5)
    assert greedy.tolist() == want_greedy.tolist()
    assert greedy.sum() >= 13


def test_the_first_of_equal_maxima_is_the_argmax():
    # two words tie for the largest logit, in different blocks: the first one wins, as in max()
    weight = torch.zeros(10, 2)
    weight[2, 0] = weight[7, 0] = 1.0
    hidden = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    targets = torch.tensor([2, 7])
    _, greedy = head_scores(VocabHead(weight, block=4).blocks, hidden, targets, 8)
    assert greedy.tolist() == [True, False]


def test_precomputed_logits_are_not_overwritten():
    logits = torch.randn(6, 50)
    kept = logits.clone()
    lp, _ = head_scores(logits_as_blocks, logits, torch.arange(6), 4)
    torch.testing.assert_close(lp, torch.log_softmax(kept.double(), -1)[torch.arange(6), :6].diag())
    assert torch.equal(logits, kept)


def test_head_shape_by_device():
    assert head_shape(262_144, "cpu") == (1024, 4096)
    assert head_shape(1000, "cpu") == (1024, 1000)
    positions, block = head_shape(262_144, "cuda")
    assert block == 262_144 and positions * block * 4 <= 1 << 30
