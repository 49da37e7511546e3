"""Observations from evaluation samples and feedback judgments, each marked failed or not.

A sample fails by its task kind's per-item score (a wrong choice or label; a generated answer
with token F1 below 0.5; a document whose bits per byte are in the task's worst tenth), or by a
criterion the user gives (``token_f1<0.3``, ``bits_per_byte>p80``: a number or a percentile of
the task). A feedback judgment fails when ``FeedbackJudgment.is_failure`` says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from whetstone.diagnose.schema import Observation
from whetstone.errors import ConfigError, DataError
from whetstone.records import FeedbackJudgment, SampleRecord

__all__ = [
    "DEFAULT_CRITERIA",
    "FailureCriterion",
    "TaskData",
    "criterion_for",
    "infer_kind",
    "item_texts",
    "load_task_data",
    "observations_from_feedback",
    "observations_from_samples",
    "parse_criterion",
]

UNPARSED = "<unparsed>"
_CRITERION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<|>)\s*(p?)(-?\d+(?:\.\d*)?(?:e-?\d+)?)\s*$")
_SAMPLE_KEYS = frozenset({"output", "labels", "choices"})
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class FailureCriterion(BaseModel):
    """A per-item metric compared with a bound: ``token_f1<0.5`` or ``bits_per_byte>p90``.

    With ``percentile`` the bound is that percentile of the metric within the task.
    """

    metric: str
    op: Literal["<", ">"]
    value: float
    percentile: bool = False

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{'p' if self.percentile else ''}{self.value:g}"

    def failed(self, values: np.ndarray) -> np.ndarray:
        """Which of the task's values fail (NaN never fails)."""
        bound = self.value
        finite = values[np.isfinite(values)]
        if self.percentile:
            bound = float(np.percentile(finite, self.value)) if finite.size else math.nan
        with np.errstate(invalid="ignore"):
            return values < bound if self.op == "<" else values > bound


#: The failure criterion of each task kind when the user gives none.
DEFAULT_CRITERIA: dict[str, FailureCriterion] = {
    "multiple_choice": FailureCriterion(metric="acc", op="<", value=0.5),
    "classification": FailureCriterion(metric="accuracy", op="<", value=0.5),
    "generation": FailureCriterion(metric="token_f1", op="<", value=0.5),
    "perplexity": FailureCriterion(metric="bits_per_byte", op=">", value=90, percentile=True),
}


def parse_criterion(text: str) -> FailureCriterion:
    """A criterion from ``METRIC<VALUE`` or ``METRIC>pNN``; ConfigError when malformed."""
    match = _CRITERION.match(text)
    if match is None:
        raise ConfigError(
            f"failure criterion {text!r}: expected METRIC<VALUE or METRIC>VALUE, where VALUE "
            "is a number or pNN for a percentile of the task (e.g. token_f1<0.5, "
            "bits_per_byte>p90)"
        )
    metric, op, pct, value = match.groups()
    number = float(value)
    if pct and not 0 <= number <= 100:
        raise ConfigError(f"failure criterion {text!r}: a percentile must be within 0..100")
    return FailureCriterion(metric=metric, op=op, value=number, percentile=bool(pct))


def infer_kind(samples: Sequence[SampleRecord]) -> str:
    """The task kind that produced these samples, from their per-item metrics."""
    keys = set().union(*(s.metrics for s in samples)) if samples else set()
    for metric, kind in (
        ("acc", "multiple_choice"),
        ("accuracy", "classification"),
        ("token_f1", "generation"),
        ("bits_per_byte", "perplexity"),
    ):
        if metric in keys:
            return kind
    return "unknown"


def _common_prefix(texts: Sequence[str]) -> str:
    """The longest string every text starts with."""
    if not texts:
        return ""
    low, high = min(texts), max(texts)  # the prefix common to the extremes is common to all
    n = 0
    while n < min(len(low), len(high)) and low[n] == high[n]:
        n += 1
    return low[:n]


def item_texts(prompts: Sequence[str]) -> list[str]:
    """Each prompt without the text that all of them share at the start and at the end.

    A task's template ("Article: ... Answer:") is the same for every item; what remains is the
    item's own text, which is what lengths, keywords and topics should look at. When every
    prompt is made of the same number of blank-line-separated blocks (solved examples before
    the item), only the last block is kept. Cuts move back to word boundaries.
    """
    if len(prompts) < 2:
        return [p.strip() for p in prompts]
    blocks = [p.rstrip().split("\n\n") for p in prompts]
    if len({len(b) for b in blocks}) == 1 and len(blocks[0]) > 1:
        last = [b[-1] for b in blocks]
        if _common_prefix(last).strip():  # the template's head starts every last block
            prompts = last
    prefix = _common_prefix(list(prompts))
    suffix = _common_prefix([p[len(prefix) :][::-1] for p in prompts])[::-1]
    head = len(prefix)
    while head > 0 and not prefix[head - 1].isspace():
        head -= 1
    tail = len(suffix)
    while tail > 0 and not suffix[len(suffix) - tail].isspace():
        tail -= 1
    return [p[head : len(p) - tail].strip() for p in prompts]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " | ".join(str(v) for v in value)
    return str(value)


def _sample_columns(sample: SampleRecord) -> dict[str, Any]:
    """Item columns a sample carries beyond what the engine always writes."""
    columns = {k: v for k, v in (sample.model_extra or {}).items() if not k.startswith("_")}
    columns.update(
        {k: v for k, v in sample.extra.items() if k not in _SAMPLE_KEYS and not k.startswith("_")}
    )
    return columns


def _describe(sample: SampleRecord, kind: str) -> dict[str, Any]:
    """Output, reference and labels of a sample as text, by task kind."""
    out: dict[str, Any] = {}
    if kind == "multiple_choice":
        choices = [str(c) for c in sample.extra.get("choices", [])]
        pred, gold = sample.prediction, sample.gold
        if isinstance(pred, int) and 0 <= pred < len(choices):
            out["output"] = choices[pred]
            out["predicted_label"] = _LETTERS[pred % 26]
        if isinstance(gold, int) and 0 <= gold < len(choices):
            out["reference"] = choices[gold]
            out["gold_label"] = _LETTERS[gold % 26]
    elif kind == "classification":
        out["output"] = _as_text(sample.extra.get("output", sample.prediction))
        out["generated"] = sample.loglikelihoods is None
        out["predicted_label"] = _as_text(sample.prediction)
        out["gold_label"] = out["reference"] = _as_text(sample.gold)
    elif kind == "generation":
        out["output"] = _as_text(sample.prediction)
        out["generated"] = True
        refs = sample.gold if isinstance(sample.gold, list) else [sample.gold]
        out["references"] = [str(r) for r in refs if r is not None]
        out["reference"] = out["references"][0] if out["references"] else None
    return out


def observations_from_samples(
    run_id: str,
    samples: Sequence[SampleRecord],
    kinds: dict[str, str] | None = None,
    data: TaskData | None = None,
    criteria: Sequence[FailureCriterion] = (),
) -> list[Observation]:
    """One observation per sample, failed by the first criterion whose metric the task has.

    ``kinds`` maps task names to kinds (inferred from the metrics when absent); ``data`` holds
    the items' columns and own texts from their task files (else texts come from the prompts).
    """
    by_task: dict[str, list[SampleRecord]] = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    observations: list[Observation] = []
    for task, group in by_task.items():
        kind = (kinds or {}).get(task) or infer_kind(group)
        criterion = criterion_for(group, kind, criteria)
        values = np.array([s.metrics.get(criterion.metric, math.nan) for s in group], dtype=float)
        failed = criterion.failed(values) if criterion.metric else np.zeros(len(group), bool)
        texts = item_texts([s.prompt for s in group])
        known_texts = data.texts.get(task, {}) if data else {}
        texts = [known_texts.get(s.id, t) for s, t in zip(group, texts, strict=True)]
        task_columns = data.columns.get(task, {}) if data else {}
        for s, text, fail, value in zip(group, texts, failed, values, strict=True):
            observations.append(
                Observation(
                    uid=f"{run_id}:{task}:{s.id}",
                    source="sample",
                    origin=run_id,
                    task=task,
                    kind=kind,
                    item_id=s.id,
                    prompt=s.prompt,
                    text=text,
                    failed=bool(fail),
                    score=None if math.isnan(value) else float(value),
                    metrics={k: float(v) for k, v in s.metrics.items()},
                    columns={**_sample_columns(s), **task_columns.get(s.id, {})},
                    **_describe(s, kind),
                )
            )
    return observations


def criterion_for(
    group: Sequence[SampleRecord], kind: str, criteria: Sequence[FailureCriterion]
) -> FailureCriterion:
    """The first user criterion whose metric the task's samples have, else the kind's default
    (a criterion with an empty metric name when neither applies: nothing fails)."""
    present = set().union(*(s.metrics for s in group))
    for criterion in criteria:
        if criterion.metric in present:
            return criterion
    default = DEFAULT_CRITERIA.get(kind)
    if default is not None and default.metric in present:
        return default
    return FailureCriterion(metric="", op="<", value=0.0)


def _feedback_score(j: FeedbackJudgment) -> float | None:
    if j.likert is not None:
        return (j.likert - 1) / 4
    if j.thumbs is not None:
        return float(j.thumbs)
    if j.arena_outcome is not None:
        return {"win": 1.0, "tie": 0.5, "loss": 0.0, "both_bad": 0.0}[j.arena_outcome]
    return None


def observations_from_feedback(judgments: Iterable[FeedbackJudgment]) -> list[Observation]:
    """One observation per judgment; the human correction (else the reference) is the reference.

    The judged model, the mode, the answer's position (arena) and the participant become
    columns, so slices can show, say, that one model version or one side of the screen loses.
    """
    observations: list[Observation] = []
    for i, j in enumerate(judgments):
        reference = j.correction if j.correction is not None else j.reference
        model = f"{j.model}@{j.model_version}" if j.model_version else j.model
        columns: dict[str, Any] = {"model": model, "participant": j.participant}
        if j.position is not None:
            columns["position"] = j.position
        observations.append(
            Observation(
                uid=f"{j.campaign}:{j.item_id}:{j.participant}:{model}:{i}",
                source="feedback",
                origin=j.campaign,
                task=f"feedback:{j.campaign}",
                kind=j.mode,
                item_id=j.item_id,
                prompt=j.prompt,
                text=j.prompt.strip(),
                output=j.output,
                generated=True,
                reference=reference,
                references=[reference] if reference is not None else [],
                failed=j.is_failure,
                score=_feedback_score(j),
                columns=columns,
                comment=j.comment,
                tags=list(j.tags),
            )
        )
    return observations


@dataclass
class TaskData:
    """What task files add to stored samples: item columns and item texts, by task and id."""

    columns: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_task_data(
    task_files: Sequence[str | Path], task_hashes: dict[str, str] | None = None
) -> TaskData:
    """The data columns and own text (the prompt template filled, without few-shot examples and
    the template's fixed words) of every item of these task files.

    Columns the task reads as its answer (label, answer, target, choices) are left out: the
    gold label is an attribute already. A task whose data changed since the run (by its task
    hash) is still joined by item id, with a note.
    """
    from whetstone.tasks.loading import load_items, load_tasks, task_hash
    from whetstone.tasks.prompts import render

    data = TaskData()
    for path in task_files:
        for task in load_tasks(path):
            skip = {task.label, task.answer, task.target, task.choices, task.answer_labels}
            try:
                items = load_items(task)
            except DataError as e:
                raise DataError(f"{path}: {e}") from e
            ids = [str(item["_id"]) for item in items]
            data.columns[task.name] = {
                i: {k: v for k, v in item.items() if not k.startswith("_") and k not in skip}
                for i, item in zip(ids, items, strict=True)
            }
            if task.kind == "perplexity":
                own = [str(item[task.text]) for item in items]
            else:
                own = item_texts([render(task.prompt, item, task) for item in items])
            data.texts[task.name] = dict(zip(ids, own, strict=True))
            known = (task_hashes or {}).get(task.name)
            if known is not None and known != task_hash(task):
                data.notes.append(
                    f"task '{task.name}' in {path} differs from the evaluated one (task hash); "
                    "its columns were joined by item id"
                )
    return data
