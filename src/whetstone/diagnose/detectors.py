"""Built-in failure detectors that need no model: each looks at one answer and says yes or no.

A detector answers None where it does not apply (a chosen multiple-choice option cannot be
empty; numbers cannot mismatch when the reference has none). Some thresholds look at the whole
task (an answer is "truncated" when it ends mid-sentence at about the longest length the task's
answers reach, i.e. at the token limit).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from whetstone.diagnose.schema import Observation
from whetstone.errors import missing_extra
from whetstone.registry import Registry

__all__ = [
    "DETECTORS",
    "Check",
    "TaskOutputs",
    "detect",
    "detector",
    "numbers",
    "run_detectors",
]

Check = Callable[[Observation, "TaskOutputs"], "bool | None"]
"""A detector: its verdict on one answer, None where it does not apply."""

DETECTORS: Registry[Check] = Registry("detectors", noun="detector")
"""Every detector by name, with its ``description`` (entry-point group ``whetstone.detectors``:
an outside package's detector is a function of the same shape)."""


def detector(name: str, description: str) -> Callable[[Check], Check]:
    """Register the decorated check as the detector ``name``."""
    return DETECTORS.decorator(name, description=description)


UNPARSED = "<unparsed>"
_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
_ENDINGS = frozenset(".!?…\"'”’)]}>`*:;")
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|unfortunately,? i)"
    r"|\bi (cannot|can't|can ?not|won't|will not|am unable to|'m unable to|am not able to|"
    r"'m not able to) (help|assist|answer|provide|comply|do that|fulfil|share|discuss)"
    r"|\bas an ai\b|\bas a (large )?language model\b"
    r"|\bi (do not|don't) (know|have (enough |that )?information)\b",
    re.IGNORECASE,
)
_ENGLISH = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "you",
        "your",
        "we",
        "our",
        "he",
        "she",
        "his",
        "her",
        "i",
        "my",
        "me",
        "not",
        "no",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "can",
        "could",
        "should",
        "as",
        "if",
        "so",
        "than",
        "then",
        "what",
        "which",
        "who",
        "when",
        "where",
        "how",
        "why",
    ]
)
_LOOP = re.compile(r"(\w.{1,39}?)\1{3,}", re.DOTALL)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def numbers(text: str) -> set[float]:
    """The numbers written in a text (digits with thousands separators, or zero..twelve)."""
    found = set()
    for m in _NUMBER.findall(text):
        try:
            found.add(float(m.replace(",", "")))
        except ValueError:
            continue
    found.update(float(_NUMBER_WORDS[w]) for w in words(text) if w in _NUMBER_WORDS)
    return found


@dataclass(frozen=True)
class TaskOutputs:
    """What detectors need to know about a whole task's answers."""

    max_words: int  # the longest generated answer, in words
    generated: int  # how many answers were generated
    label_set: frozenset[str]  # a generation task's few distinct short references, else empty

    @classmethod
    def of(cls, group: Sequence[Observation]) -> TaskOutputs:
        """Summarize one task's observations."""
        gen = [o for o in group if o.generated]
        refs = {
            r.strip().lower()
            for o in group
            if o.kind == "generation"
            for r in (o.references or ([o.reference] if o.reference else []))
        }
        small = 2 <= len(refs) <= 12 and len(group) >= 3 * len(refs)
        short = all(len(r.split()) <= 3 for r in refs)
        return cls(
            max_words=max((len(words(o.output)) for o in gen), default=0),
            generated=len(gen),
            label_set=frozenset(refs) if small and short else frozenset(),
        )


@detector("empty", "the answer is empty or whitespace only")
def _empty(o: Observation, t: TaskOutputs) -> bool | None:
    return o.output.strip() == "" if o.generated else None


@detector(
    "truncated", "the answer stops mid-sentence at the task's longest answer length (token limit)"
)
def _truncated(o: Observation, t: TaskOutputs) -> bool | None:
    if not o.generated or t.generated < 5 or t.max_words < 8 or not o.output.strip():
        return None
    text = o.output.rstrip()
    return text[-1] not in _ENDINGS and len(words(text)) >= 0.8 * t.max_words


@detector("refusal", "the model declines or deflects instead of answering")
def _refusal(o: Observation, t: TaskOutputs) -> bool | None:
    return bool(_REFUSAL.search(o.output)) if o.generated and o.output.strip() else None


@functools.cache
def _language(text: str) -> tuple[str, float] | None:
    """The most likely language of a text and its probability (langdetect, fixed seed)."""
    try:
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException
    except ImportError as err:
        raise missing_extra("langdetect", "diagnose") from err
    DetectorFactory.seed = 0
    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return None
    return str(best.lang), float(best.prob)


def _long_enough(text: str | None) -> bool:
    return text is not None and len(words(text)) >= 4 and sum(c.isalpha() for c in text) >= 20


def _looks_english(text: str) -> bool:
    """Many common English function words: English for sure, no need to ask langdetect."""
    tokens = words(text)
    hits = sum(w in _ENGLISH for w in tokens)
    return hits >= 3 and hits >= 0.25 * len(tokens)


@detector("wrong_language", "the answer is in another language than the reference or the question")
def _wrong_language(o: Observation, t: TaskOutputs) -> bool | None:
    if not o.generated or not _long_enough(o.output):
        return None
    expected_text = o.reference if _long_enough(o.reference) else o.text
    if not _long_enough(expected_text):
        return None
    if _looks_english(o.output) and _looks_english(expected_text or ""):
        return False  # the common case, decided without the (slow) language model
    got, expected = _language(o.output[:2000]), _language((expected_text or "")[:2000])
    if got is None or expected is None or min(got[1], expected[1]) < 0.9:
        return None
    return got[0] != expected[0]


@detector("repetition", "the answer repeats itself or degenerates (loops, few distinct words)")
def _repetition(o: Observation, t: TaskOutputs) -> bool | None:
    if not o.generated or not o.output.strip():
        return None
    tokens = words(o.output)
    if len(tokens) >= 8:
        grams = list(zip(tokens, tokens[1:], tokens[2:], strict=False))
        if len(set(grams)) / len(grams) < 0.5:
            return True
        if any(
            tokens[i] == tokens[i + 1] == tokens[i + 2] == tokens[i + 3]
            for i in range(len(tokens) - 3)
        ):
            return True
    return bool(_LOOP.search(o.output))


def _parses_as_json(text: str) -> bool:
    body = re.sub(r"^```\w*\s*|\s*```$", "", text.strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


@detector(
    "format_failure", "the answer cannot be read as what the task expects (label, number, JSON)"
)
def _format_failure(o: Observation, t: TaskOutputs) -> bool | None:
    if o.kind == "classification":
        return o.predicted_label == UNPARSED
    if o.kind != "generation" or not o.references:
        return None
    refs = [r.strip() for r in o.references]
    if any(r[:1] in "{[" and _parses_as_json(r) for r in refs):
        return not _parses_as_json(o.output)
    if all(_NUMBER.fullmatch(re.sub(r"[$€£%\s]", "", r)) for r in refs):
        return not numbers(o.output)
    if t.label_set:
        out = " ".join(words(o.output))
        return not any(out.startswith(" ".join(words(label))) for label in t.label_set)
    return None


@detector("numeric_mismatch", "the numbers in the answer differ from those in the reference")
def _numeric_mismatch(o: Observation, t: TaskOutputs) -> bool | None:
    wanted = [numbers(r) for r in o.references if numbers(r)]
    got = numbers(o.output) if o.generated else set()
    if not wanted or not got:
        return None
    return not any(w <= got for w in wanted)


@detector("length_mismatch", "the answer is far shorter or longer than the reference")
def _length_mismatch(o: Observation, t: TaskOutputs) -> bool | None:
    if not o.generated or not o.references or not o.output.strip():
        return None
    n = len(words(o.output))
    lengths = [len(words(r)) for r in o.references if r.strip()]
    if not lengths:
        return None
    ref = min(lengths, key=lambda m: abs(m - n))
    return (n > 3 * ref and n - ref >= 10) or (n < ref / 3 and ref - n >= 5)


@detector("label_confusion", "a classification answer names another valid label")
def _label_confusion(o: Observation, t: TaskOutputs) -> bool | None:
    if o.kind != "classification" or o.gold_label is None:
        return None
    return o.predicted_label not in (None, UNPARSED, o.gold_label)


def detect(o: Observation, task: TaskOutputs) -> dict[str, bool]:
    """The applicable detectors' verdicts on one observation."""
    verdicts = {}
    for name, check in DETECTORS.items():
        verdict = check(o, task)
        if verdict is not None:
            verdicts[name] = bool(verdict)
    return verdicts


def run_detectors(observations: Sequence[Observation]) -> list[dict[str, bool]]:
    """Every observation's verdicts; sets ``Observation.detectors`` to the names that fired."""
    by_task: dict[str, list[Observation]] = {}
    for o in observations:
        by_task.setdefault(o.task, []).append(o)
    summaries = {task: TaskOutputs.of(group) for task, group in by_task.items()}
    verdicts = []
    for o in observations:
        v = detect(o, summaries[o.task])
        o.detectors = [name for name, fired in v.items() if fired]
        verdicts.append(v)
    return verdicts
