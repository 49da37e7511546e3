"""Per-item views of runs: samples by task, whether each was right, examples to show."""

from __future__ import annotations

from whetstone.metrics import headline_metrics, metric_spec
from whetstone.records import SampleRecord
from whetstone.report.model import Example

#: Per-item 0/1 metrics that say whether an item was answered right: the registry's headline
#: proportions (acc, accuracy, exact_match).
CORRECTNESS = tuple(m for m in headline_metrics() if metric_spec(m).aggregation == "proportion")
#: Examples shown per task and direction (fixed, broken, failed).
EXAMPLES_PER_TASK = 4
#: Longer prompts are shown by their end (where the item is; few-shot examples come first).
PROMPT_CHARS = 600


def by_task(samples: list[SampleRecord]) -> dict[str, list[SampleRecord]]:
    """Samples grouped by task, in order."""
    out: dict[str, list[SampleRecord]] = {}
    for s in samples:
        out.setdefault(s.task, []).append(s)
    return out


def correctness(samples: list[SampleRecord]) -> str | None:
    """The per-item 0/1 metric these samples carry, if any."""
    keys = set(samples[0].metrics) if samples else set()
    return next((k for k in CORRECTNESS if k in keys), None)


def _text(value: object) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return "" if value is None else str(value)


def display_prediction(s: SampleRecord) -> str:
    """The model's answer as text (a chosen option with its number)."""
    choices = s.extra.get("choices")
    if isinstance(s.prediction, int) and isinstance(choices, list) and s.prediction < len(choices):
        return f"{s.prediction}: {choices[s.prediction]}"
    return _text(s.prediction)


def display_gold(s: SampleRecord) -> str:
    """The reference answer as text (the gold option with its number)."""
    choices = s.extra.get("choices")
    if isinstance(s.gold, int) and isinstance(choices, list) and s.gold < len(choices):
        return f"{s.gold}: {choices[s.gold]}"
    return _text(s.gold)


def _short(prompt: str) -> str:
    return prompt if len(prompt) <= PROMPT_CHARS else "…" + prompt[-PROMPT_CHARS:]


def failure_examples(samples: list[SampleRecord], label: str) -> list[Example]:
    """A few wrongly answered items per task (the first in the run's order)."""
    out = []
    for task, items in by_task(samples).items():
        key = correctness(items)
        if key is None:
            continue
        wrong = [s for s in items if s.metrics.get(key) == 0][:EXAMPLES_PER_TASK]
        out += [
            Example(
                task,
                s.id,
                _short(s.prompt),
                display_gold(s),
                [(label, display_prediction(s))],
                "wrong",
            )
            for s in wrong
        ]
    return out


def changed_examples(
    base: list[SampleRecord], cand: list[SampleRecord], cand_label: str
) -> list[Example]:
    """Items the candidate fixed and items it broke, a few per task."""
    index = {(s.task, s.id): s for s in cand}
    out = []
    for task, items in by_task(base).items():
        key = correctness(items)
        if key is None:
            continue
        pairs = [(s, index[(task, s.id)]) for s in items if (task, s.id) in index]
        for note, was, now in (("fixed", 0, 1), ("broken", 1, 0)):
            chosen = [
                (a, b) for a, b in pairs if a.metrics.get(key) == was and b.metrics.get(key) == now
            ][:EXAMPLES_PER_TASK]
            out += [
                Example(
                    task,
                    a.id,
                    _short(a.prompt),
                    display_gold(a),
                    [("baseline", display_prediction(a)), (cand_label, display_prediction(b))],
                    note,
                )
                for a, b in chosen
            ]
    return out
