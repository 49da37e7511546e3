"""Training examples from a whetstone task: token ids and labels for the transformers Trainer.

- Plain text (a perplexity task): each document is cut into blocks of ``max_length`` tokens;
  every token is a target.
- Prompt/response (generation, classification, multiple-choice tasks): the task's prompt, then
  the gold answer exactly as a solved few-shot example shows it (`answer_text`). The pair is
  split into tokens as lm-evaluation-harness (and whetstone's scoring) splits a context and its
  continuation, and only the response tokens are targets (label -100 elsewhere).
- Sequence classification: the task's prompt (what `SequenceClassifier` reads) and the index of
  the gold label in the task's ``labels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from whetstone.errors import ConfigError, DataError
from whetstone.optimize.finetune_config import FinetuneConfig
from whetstone.tasks.loading import gold_label, load_items, load_tasks
from whetstone.tasks.prompts import answer_text, input_text, render
from whetstone.tasks.schema import DataSpec, TaskConfig

IGNORE_INDEX = -100
"""Label of a position that is not a target (PyTorch's cross-entropy ignore_index)."""


@dataclass
class TrainSet:
    """The training task (few-shot removed) and its items."""

    task: TaskConfig
    items: list[dict[str, Any]]


def train_task(config: FinetuneConfig) -> TaskConfig:
    """The task whose items are the training examples, read from another data file if asked."""
    spec = config.data
    tasks = load_tasks(config.resolve(spec.task))
    if spec.name is not None:
        tasks = [t for t in tasks if t.name == spec.name]
        if not tasks:
            raise ConfigError(f"data.name: no task named '{spec.name}' in {spec.task}")
    if len(tasks) != 1:
        names = ", ".join(t.name for t in tasks)
        raise ConfigError(f"data.task: {spec.task} holds several tasks ({names}); set data.name")
    task = tasks[0]
    update: dict[str, Any] = {"fewshot": None, "fewshot_prompt": None}
    if spec.path is not None:
        update["data"] = DataSpec(
            path=str(config.resolve(spec.path).resolve()),
            columns=spec.columns if spec.columns is not None else task.data.columns,
            id=spec.id if spec.id is not None else task.data.id,
            chunk_chars=task.data.chunk_chars,
        )
    return task.model_copy(update=update)


def load_train_set(config: FinetuneConfig) -> TrainSet:
    """The training task and its items (after ``skip``, at most ``limit``)."""
    task = train_task(config)
    spec = config.data
    cap = spec.skip + spec.limit if spec.limit is not None else None
    items = load_items(task, cap)[spec.skip :]
    if not items:
        raise DataError(f"data: task '{task.name}' gives no training items (after skip/limit)")
    return TrainSet(task, items)


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation ids, split as lm-evaluation-harness's ``_encode_pair``.

    Trailing spaces of the context move to the continuation; the whole text is encoded once and
    the continuation is what follows the encoded context, so training sees the same tokens as
    scoring does.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = list(tokenizer.encode(context + continuation))
    context_ids = list(tokenizer.encode(context))
    return context_ids, whole[len(context_ids) :]


def response_example(
    tokenizer: Any, prompt: str, response: str, max_length: int, append_eos: bool
) -> dict[str, list[int]]:
    """input_ids and labels of one prompt/response pair; only response tokens are targets.

    A pair longer than ``max_length`` loses tokens from the left (the start of the prompt),
    as scoring truncates contexts.
    """
    context_ids, response_ids = encode_pair(tokenizer, prompt, response)
    if append_eos and tokenizer.eos_token_id is not None:
        response_ids = [*response_ids, int(tokenizer.eos_token_id)]
    ids = (context_ids + response_ids)[-max_length:]
    n_targets = min(len(response_ids), len(ids) - 1)
    labels = [IGNORE_INDEX] * (len(ids) - n_targets) + ids[len(ids) - n_targets :]
    return {"input_ids": ids, "labels": labels}


def text_blocks(tokenizer: Any, text: str, max_length: int) -> list[dict[str, list[int]]]:
    """A document cut into blocks of at most ``max_length`` tokens, every token a target."""
    ids = list(tokenizer.encode(text))
    blocks = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    return [{"input_ids": b, "labels": list(b)} for b in blocks if len(b) > 1]


def causal_examples(
    train: TrainSet, tokenizer: Any, config: FinetuneConfig
) -> list[dict[str, Any]]:
    """Token examples for next-token training on the task's items."""
    task, spec = train.task, config.data
    examples: list[dict[str, Any]] = []
    for item in train.items:
        if task.kind == "perplexity":
            examples += text_blocks(tokenizer, str(item[task.text]), spec.max_length)
        else:
            prompt = render(task.prompt, item, task)
            examples.append(
                response_example(
                    tokenizer, prompt, answer_text(task, item), spec.max_length, spec.append_eos
                )
            )
    if not examples:
        raise DataError(f"data: task '{task.name}': no training tokens in its items")
    return examples


def classification_examples(
    train: TrainSet, tokenizer: Any, config: FinetuneConfig
) -> list[dict[str, Any]]:
    """Token examples for a sequence classifier: the prompt's ids and the gold label's index."""
    task = train.task
    if task.kind != "classification":
        raise ConfigError(
            f"data.task: a sequence classifier trains on a classification task, "
            f"'{task.name}' is a {task.kind} task"
        )
    keys = list(task.labels or {})
    examples = []
    for item in train.items:
        enc = tokenizer(input_text(task, item), truncation=True, max_length=config.data.max_length)
        examples.append({**dict(enc), "labels": keys.index(gold_label(task, item))})
    return examples


class CausalCollator:
    """Right-pads input_ids (pad id), labels (-100) and builds the attention mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """One padded batch of tensors."""
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
