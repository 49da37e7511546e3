"""One scorer per task kind: build the requests, call the model, turn answers into metrics."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from whetstone.evaluate import metrics as M
from whetstone.evaluate.cache import CachedModel
from whetstone.evaluate.statistics import sampling_spread
from whetstone.metrics import metric_spec
from whetstone.models.base import (
    GenerationRequest,
    LabelScorer,
    LoglikelihoodRequest,
    Progress,
    RollingRequest,
)
from whetstone.records import MetricValue, SampleRecord, TaskResult
from whetstone.tasks.loading import gold_index, gold_label
from whetstone.tasks.prompts import build_prompt, input_text, targets
from whetstone.tasks.schema import TaskConfig

UNPARSED = "<unparsed>"


@dataclass
class TaskContext:
    """What a scorer needs besides the task: the model, prompt wrapping, seed and progress."""

    model: CachedModel
    seed: int
    wrap: Callable[[str], str]
    progress: Progress | None = None
    repeats: int = 1  # sampled outputs per item of generation tasks with temperature > 0


def select_metrics(values: dict[str, MetricValue], wanted: Sequence[str]) -> dict[str, MetricValue]:
    """Metrics named in `wanted`, or starting with a wanted name and `_` (f1 -> f1_micro)."""
    return {
        k: v for k, v in values.items() if k in wanted or any(k.startswith(f"{w}_") for w in wanted)
    }


def _prompts(
    task: TaskConfig, items: list[dict[str, Any]], pool: list[dict[str, Any]], ctx: TaskContext
) -> list[str]:
    return [ctx.wrap(build_prompt(task, item, pool)) for item in items]


def _generate(task: TaskConfig, prompts: list[str], ctx: TaskContext) -> list[str]:
    """The model's completions of `prompts` with the task's generation settings."""
    requests = [
        GenerationRequest(p, task.max_new_tokens, tuple(task.stop), task.temperature, seed=ctx.seed)
        for p in prompts
    ]
    return ctx.model.generate(requests, ctx.progress)


def _softmax(rows: list[list[float]]) -> np.ndarray:
    arr = np.asarray(rows, dtype=float)
    arr = np.exp(arr - arr.max(axis=1, keepdims=True))
    return arr / arr.sum(axis=1, keepdims=True)


def score_multiple_choice(
    task: TaskConfig, items: list[dict[str, Any]], pool: list[dict[str, Any]], ctx: TaskContext
) -> tuple[TaskResult, list[SampleRecord]]:
    """Log-likelihood of every choice; acc, acc_norm, Brier score and ECE."""
    prompts = _prompts(task, items, pool, ctx)
    choices = [[str(c) for c in item[task.choices or ""]] for item in items]
    requests = [
        LoglikelihoodRequest(p, task.choice_prefix + c)
        for p, cs in zip(prompts, choices, strict=True)
        for c in cs
    ]
    answers = iter(ctx.model.loglikelihood(requests, ctx.progress))
    lls = [[next(answers).logprob for _ in cs] for cs in choices]
    gold = [gold_index(task, item) for item in items]
    values, per_item = M.multiple_choice_metrics(
        lls, [[len(c) for c in cs] for cs in choices], gold, seed=ctx.seed
    )
    samples = [
        SampleRecord(
            task=task.name,
            id=item["_id"],
            prompt=p,
            prediction=int(np.argmax(ll)),
            gold=g,
            metrics=m,
            loglikelihoods=ll,
            extra={"choices": cs},
        )
        for item, p, cs, ll, g, m in zip(items, prompts, choices, lls, gold, per_item, strict=True)
    ]
    return TaskResult(kind=task.kind, metrics=select_metrics(values, task.metric_names)), samples


def parse_label(output: str, verbalized: dict[str, str]) -> str:
    """The label whose verbalization starts the output (longest first), else UNPARSED."""
    text = re.sub(r"^[\s\"'*:.-]+", "", output).lower()
    for key, words in sorted(verbalized.items(), key=lambda kv: -len(kv[1])):
        if text.startswith(words.strip().lower()):
            return key
    return UNPARSED


def score_classification(
    task: TaskConfig, items: list[dict[str, Any]], pool: list[dict[str, Any]], ctx: TaskContext
) -> tuple[TaskResult, list[SampleRecord]]:
    """Gold label vs the best-scoring verbalized label (or a generated, parsed label)."""
    labels = dict(task.labels or {})
    keys = list(labels)
    prompts = _prompts(task, items, pool, ctx)
    gold = [gold_label(task, item) for item in items]
    probs: np.ndarray | None = None
    lls: list[list[float]] | None = None
    classifier = ctx.model.model
    if isinstance(classifier, LabelScorer):
        # a sequence classifier reads the prompt without few-shot examples: its class
        # probabilities, mapped to the task's labels, stand in for the label likelihoods
        prompts = [input_text(task, item) for item in items]
        probs = classifier.label_probabilities(
            prompts, dict(task.labels or {}), task.name, ctx.progress
        )
        lls = np.log(np.clip(probs, 1e-300, None)).tolist()
        predicted = [keys[int(np.argmax(row))] for row in probs]
        outputs = [labels[k] for k in predicted]
    elif task.classify_by == "generation":
        outputs = _generate(task, prompts, ctx)
        predicted = [parse_label(o, labels) for o in outputs]
    else:
        requests = [
            LoglikelihoodRequest(p, task.choice_prefix + labels[k]) for p in prompts for k in keys
        ]
        answers = iter(ctx.model.loglikelihood(requests, ctx.progress))
        lls = [[next(answers).logprob for _ in keys] for _ in prompts]
        probs = _softmax(lls)
        predicted = [keys[int(np.argmax(row))] for row in lls]
        outputs = [labels[k] for k in predicted]
    names = [labels[k] for k in keys]
    values, tables, per_item = M.classification_metrics(
        [labels[g] for g in gold],
        [labels.get(p, UNPARSED) for p in predicted],
        names,
        probs,
        seed=ctx.seed,
        positive=labels[task.positive] if task.positive is not None else None,
    )
    samples = [
        SampleRecord(
            task=task.name,
            id=item["_id"],
            prompt=p,
            prediction=labels.get(pred, UNPARSED),
            gold=labels[g],
            metrics=m,
            loglikelihoods=lls[i] if lls else None,
            extra={"output": out, "labels": names},
        )
        for i, (item, p, pred, g, out, m) in enumerate(
            zip(items, prompts, predicted, gold, outputs, per_item, strict=True)
        )
    ]
    result = TaskResult(
        kind=task.kind, metrics=select_metrics(values, task.metric_names), tables=tables
    )
    return result, samples


def repeat_seed(seed: int, repeat: int) -> int:
    """The sampling seed of an item's output number `repeat` (the first keeps the run's seed,
    so a run with repeats shares its first outputs with the same run without)."""
    if repeat == 0:
        return seed
    digest = hashlib.sha256(f"whetstone-repeat:{seed}:{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def repeats_of(task: TaskConfig, repeats: int) -> int:
    """Outputs per item a task samples: `repeats` for generation at temperature > 0, else 1."""
    return repeats if task.kind == "generation" and task.temperature > 0 else 1


def _generate_repeated(
    task: TaskConfig, prompts: list[str], ctx: TaskContext, repeats: int
) -> list[list[str]]:
    """`repeats` sampled completions of each prompt, each with its own seed."""
    requests = [
        GenerationRequest(
            p,
            task.max_new_tokens,
            tuple(task.stop),
            task.temperature,
            seed=repeat_seed(ctx.seed, r),
        )
        for r in range(repeats)
        for p in prompts
    ]
    flat = ctx.model.generate(requests, ctx.progress)
    n = len(prompts)
    return [[flat[r * n + i] for r in range(repeats)] for i in range(n)]


def score_generation(
    task: TaskConfig, items: list[dict[str, Any]], pool: list[dict[str, Any]], ctx: TaskContext
) -> tuple[TaskResult, list[SampleRecord]]:
    """Generate, cut at stop strings; exact match, token F1, BLEU, chrF and ROUGE-L.

    With repeats (sampling only), each item is answered K times with different seeds; its
    metrics are means over the K outputs, and the task's ``sampling`` table says how much of
    each metric's variance is sampling."""
    prompts = _prompts(task, items, pool, ctx)
    k = repeats_of(task, ctx.repeats)
    outputs = _generate_repeated(task, prompts, ctx, k)
    predictions = [[o.strip() for o in item] for item in outputs]
    refs = [targets(task, item) for item in items]
    values, per_item, draws = M.sampled_generation_metrics(predictions, refs, seed=ctx.seed)
    samples = [
        SampleRecord(
            task=task.name,
            id=item["_id"],
            prompt=p,
            prediction=pred[0],
            gold=r,
            metrics=m,
            extra={"output": o[0]}
            | (
                {"outputs": o, "output_metrics": {n: d[i].tolist() for n, d in draws.items()}}
                if k > 1
                else {}
            ),
        )
        for i, (item, p, pred, o, r, m) in enumerate(
            zip(items, prompts, predictions, outputs, refs, per_item, strict=True)
        )
    ]
    result = TaskResult(kind=task.kind, metrics=select_metrics(values, task.metric_names))
    if k > 1 and len(items) >= 2:
        result.tables["sampling"] = {
            name: sampling_spread(draws[name])
            for name in result.metrics
            if name in draws
            and metric_spec(name).aggregation in ("proportion", "mean")
            and np.ptp(draws[name]) > 0  # a constant metric has no spread to split
        }
    return result, samples


def score_perplexity(
    task: TaskConfig, items: list[dict[str, Any]], pool: list[dict[str, Any]], ctx: TaskContext
) -> tuple[TaskResult, list[SampleRecord]]:
    """Rolling-window log-likelihood of each document; token, word and byte perplexity, bpb."""
    texts = [str(item[task.text]) for item in items]
    window = task.window
    answers = ctx.model.loglikelihood_rolling(
        [RollingRequest(t, window.max_length, window.effective_stride) for t in texts], ctx.progress
    )
    words = [M.count_words(t) for t in texts]
    n_bytes = [M.count_bytes(t) for t in texts]
    values = M.perplexity_metrics(
        [a.logprob for a in answers], [a.n_tokens for a in answers], words, n_bytes, seed=ctx.seed
    )
    samples = [
        SampleRecord(
            task=task.name,
            id=item["_id"],
            prompt=text,
            metrics={
                "logprob": a.logprob,
                "n_tokens": a.n_tokens,
                "n_words": w,
                "n_bytes": b,
                "bits_per_byte": -a.logprob / b / np.log(2) if b else float("nan"),
            },
        )
        for item, text, a, w, b in zip(items, texts, answers, words, n_bytes, strict=True)
    ]
    return TaskResult(kind=task.kind, metrics=select_metrics(values, task.metric_names)), samples


SCORERS = {
    "multiple_choice": score_multiple_choice,
    "classification": score_classification,
    "generation": score_generation,
    "perplexity": score_perplexity,
}


def request_count(task: TaskConfig, items: list[dict[str, Any]], repeats: int = 1) -> int:
    """How many model requests a task makes: what its progress bar counts."""
    if task.kind == "multiple_choice":
        return sum(len(item[task.choices or ""]) for item in items)
    if task.kind == "classification" and task.classify_by == "loglikelihood":
        return len(items) * len(task.labels or {})
    return len(items) * repeats_of(task, repeats)
