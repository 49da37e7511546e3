"""Builders shared by the distillation and quantization tests: a tiny BERT topic classifier
(trained on a small synthetic task so it is a real teacher) and task files."""

from __future__ import annotations

import atexit
import functools
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TOPICS = {
    "sports": "team won match goal coach season player league score",
    "business": "market stock profit bank company shares trade price",
    "science": "research study cells physics space experiment data lab",
}
FILLER = ["the", "a", "of", "in", "on", "today", "new", "report", "says", "after", "with"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and do not fight other processes for cores)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def topic_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Short texts whose label is the topic most of their words come from."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(list(TOPICS))
        words = rng.sample(TOPICS[label].split(), 4) + rng.sample(FILLER, 4)
        rng.shuffle(words)
        rows.append({"id": f"{seed}-{i}", "text": " ".join(words), "label": label})
    return rows


def write_topic_task(folder: Path, name: str, n: int, seed: int) -> Path:
    """A classification task file over `n` topic rows."""
    data = folder / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in topic_rows(n, seed)) + "\n")
    task = folder / f"{name}.yaml"
    task.write_text(
        f"name: {name}\nkind: classification\ndata: {{path: {data.name}, id: id}}\n"
        "label: label\nlabels: {sports: sports, business: business, science: science}\n"
    )
    return task


def bert_tokenizer(texts: list[str]) -> Any:
    """A small WordPiece tokenizer trained on `texts`."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bert(folder: Path, layers: int = 4, seed: int = 0) -> Path:
    """A random BERT topic classifier (hidden 32) saved with its tokenizer."""
    import torch
    import transformers

    texts = [r["text"] for r in topic_rows(300, 99)]
    tokenizer = bert_tokenizer(texts)
    names = list(TOPICS)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    torch.manual_seed(seed)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_teacher(folder: Path, task: Path, epochs: float = 4.0) -> None:
    """Fine-tune the tiny classifier on the task (hard labels), in place."""
    from whetstone.optimize.distill_config import DistillConfig
    from whetstone.optimize.distill_data import build_training_set
    from whetstone.optimize.distill_losses import LossWeights
    from whetstone.optimize.distill_student import load_local
    from whetstone.optimize.distill_train import train_student

    config = DistillConfig.model_validate(
        {
            "teacher": str(folder),
            "student": {"layers": 1},
            "data": {"task": str(task), "max_length": 32},
            "training": {"epochs": epochs, "batch_size": 16, "learning_rate": 2e-3},
            "device": "cpu",
        }
    )
    loaded = load_local(str(folder))
    examples = build_training_set(config, loaded.tokenizer, "classification", loaded.model)
    train_student(
        loaded.model,
        loaded.tokenizer,
        "classification",
        examples.examples,
        config,
        LossWeights(alpha=0.0),
        folder.parent / f"{folder.name}-work",
    )
    loaded.model.save_pretrained(folder)


def write_config(folder: Path, text: str) -> Path:
    """A distill config file in `folder`."""
    path = folder / "distill.yaml"
    path.write_text(text)
    return path


@functools.cache
def topic_teacher() -> dict[str, Path]:
    """A 4-layer BERT teacher trained on 300 topic texts, and a held-out task of 120 (built
    once per test process, shared by the test modules)."""
    import torch

    folder = Path(tempfile.mkdtemp(prefix="whetstone-topics-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = write_topic_task(folder, "topics_train", 300, seed=1)
        held_out = write_topic_task(folder, "topics_eval", 120, seed=2)
        teacher = tiny_bert(folder / "teacher", layers=4)
        train_teacher(teacher, train, epochs=3.0)
    finally:
        torch.set_num_threads(before)
    return {"folder": folder, "train": train, "eval": held_out, "teacher": teacher}
