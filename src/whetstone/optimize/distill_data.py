"""Training examples for distillation: the fine-tuning examples (`training_data`), with the
labels of a classifier mapped to the student's own outputs, plus batching.

The `data` section is the fine-tuning config's (`TrainData`), so distillation reads the same
examples a fine-tune of the same task would: blocks of plain text for a perplexity task,
prompt/response pairs (loss on the response) for the other kinds, (text, label) for a
sequence classifier.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.optimize.training_data import (
    IGNORE_INDEX,
    causal_examples,
    classification_examples,
    load_train_set,
)
from whetstone.tasks.schema import TaskConfig

IGNORE = IGNORE_INDEX
"""Label of a position that is not scored (padding, prompt tokens)."""


@dataclass
class TrainingSet:
    """Tokenized examples: `input_ids` and `labels` per example (a class id for classifiers)."""

    task: TaskConfig
    examples: list[dict[str, Any]]

    def fingerprint(self) -> str:
        """sha256 of the token ids and labels: equal fingerprints mean the same training data."""
        digest = hashlib.sha256()
        for ex in self.examples:
            digest.update(json.dumps([ex["input_ids"], ex["labels"]]).encode())
        return digest.hexdigest()


def label_columns(task: TaskConfig, model: Any, tokenizer: Any) -> list[int]:
    """For each of the task's labels, the classifier output standing for it (matched the way
    whetstone evaluates classifiers: by verbalization, key or LABEL_<key>)."""
    from whetstone.models.classifier import SequenceClassifier

    scorer = SequenceClassifier(model=model, tokenizer=tokenizer, name="student", model_hash="-")
    try:
        return scorer.label_columns(dict(task.labels or {}), task.name)
    except WhetstoneError as exc:
        raise ConfigError(str(exc)) from exc


def build_training_set(config: Any, tokenizer: Any, kind: str, classifier: Any) -> TrainingSet:
    """Tokenize the training items of a DistillConfig for a classifier or a causal LM."""
    train = load_train_set(config)
    if kind == "classification":
        columns = label_columns(train.task, classifier, tokenizer)
        examples = [
            {"input_ids": list(ex["input_ids"]), "labels": columns[int(ex["labels"])]}
            for ex in classification_examples(train, tokenizer, config)
        ]
    else:
        examples = [
            {"input_ids": list(ex["input_ids"]), "labels": list(ex["labels"])}
            for ex in causal_examples(train, tokenizer, config)
        ]
    return TrainingSet(train.task, examples)


def collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Pad a batch on the right; classifier labels stay one id per example; `index` (the
    example's position, which the offline cache is looked up by) passes through."""
    import torch

    width = max(len(ex["input_ids"]) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    token_labels = isinstance(examples[0]["labels"], list)
    labels = (
        torch.full((len(examples), width), IGNORE, dtype=torch.long)
        if token_labels
        else torch.tensor([ex["labels"] for ex in examples], dtype=torch.long)
    )
    for row, ex in enumerate(examples):
        n = len(ex["input_ids"])
        ids[row, :n] = torch.tensor(ex["input_ids"])
        mask[row, :n] = 1
        if token_labels:
            labels[row, :n] = torch.tensor(ex["labels"])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if "index" in examples[0]:
        batch["index"] = torch.tensor([ex["index"] for ex in examples], dtype=torch.long)
    return batch


def scored_positions(labels: Any) -> Any:
    """For token labels [B, L]: a mask [B, L] of the positions whose next token is scored."""
    import torch

    nxt = torch.full_like(labels, IGNORE)
    nxt[:, :-1] = labels[:, 1:]
    return nxt != IGNORE
