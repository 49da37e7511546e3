"""An LLM judge that puts each failure into one taxonomy category, and its agreement with humans.

Any whetstone model can judge. With ``method: likelihood`` the judge scores every category name
as the continuation of the judge prompt and picks the most likely one after subtracting the
names' log-probabilities under a content-free prompt (contextual calibration, Zhao et al.
2021), which keeps a small model from always naming the same category. With ``method:
generate`` it writes a short answer in which the first category name (or alias) counts.
Answers go through the response cache, so an interrupted diagnosis resumes without asking again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from whetstone.diagnose.categories import share_over
from whetstone.diagnose.schema import JudgeAgreement, Observation
from whetstone.diagnose.taxonomy import JudgeSpec, Taxonomy
from whetstone.evaluate.statistics import bootstrap_ci
from whetstone.models.base import GenerationRequest, LanguageModel, LoglikelihoodRequest

__all__ = ["human_labels", "judge_agreement", "judge_failures", "judge_prompt", "parse_category"]

PROMPT = """You sort the mistakes of a language model into categories.

Categories:
{categories}

Task: {task}
Input: {text}
Model answer: {output}
Expected answer: {reference}
Reviewer comment: {comment}

The category that best describes the mistake is:"""


def _cut(text: str | None, limit: int) -> str:
    if not text:
        return "(none)"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge_prompt(o: Observation | None, taxonomy: Taxonomy, max_chars: int = 600) -> str:
    """The judge prompt for one failure (None: the content-free prompt used for calibration)."""
    listing = "\n".join(
        f"- {c.name}: {' '.join(c.description.split())}" for c in taxonomy.categories
    )
    if o is None:
        fields = dict.fromkeys(("task", "text", "output", "reference", "comment"), "N/A")
    else:
        fields = {
            "task": f"{o.task} ({o.kind})",
            "text": _cut(o.text or o.prompt, max_chars),
            "output": _cut(o.output, max_chars),
            "reference": _cut(o.reference, max_chars),
            "comment": _cut(o.comment, max_chars),
        }
    return PROMPT.format(categories=listing, **fields)


def parse_category(text: str, taxonomy: Taxonomy) -> str | None:
    """The category whose name or alias appears first in a generated answer, or None."""
    best: tuple[int, str] | None = None
    for cat in taxonomy.categories:
        for label in (cat.name, *cat.aliases):
            pattern = r"\b" + r"[\s_/-]+".join(map(re.escape, re.split(r"[\s_/-]+", label))) + r"\b"
            m = re.search(pattern, text, re.IGNORECASE)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), cat.name)
    return best[1] if best else None


def _order(failures: Sequence[Observation], limit: int) -> list[Observation]:
    """Failures with human tags first (so agreement can be measured), then a fixed shuffle."""
    ranked = sorted(
        failures,
        key=lambda o: (not o.tags, hashlib.sha1(o.uid.encode()).hexdigest()),
    )
    return ranked[:limit]


def judge_failures(
    failures: Sequence[Observation],
    taxonomy: Taxonomy,
    spec: JudgeSpec,
    model: LanguageModel | None = None,
    store: object | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """The judge's category per judged failure uid (at most ``spec.max_failures`` of them).

    ``model`` overrides ``spec.model`` (already loaded); ``store`` (a Store) caches answers.
    """
    from whetstone.evaluate.cache import CachedModel
    from whetstone.models import load_model
    from whetstone.store import Store

    chosen = _order(failures, spec.max_failures)
    if not chosen:
        return {}
    lm = model if model is not None else load_model(spec.model, base_url=spec.base_url)
    cached = CachedModel(lm, store if isinstance(store, Store) else None)
    prompts = [judge_prompt(o, taxonomy, spec.max_chars) for o in chosen]
    names = taxonomy.names()
    if spec.method == "generate":
        asks = [GenerationRequest(p, spec.max_new_tokens, ("\n",)) for p in prompts]
        answers = cached.generate(asks, progress)
        found = {o.uid: parse_category(a, taxonomy) for o, a in zip(chosen, answers, strict=True)}
        return {uid: name for uid, name in found.items() if name is not None}
    null = [LoglikelihoodRequest(judge_prompt(None, taxonomy), f" {n}") for n in names]
    requests = [LoglikelihoodRequest(p, f" {n}") for p in prompts for n in names]
    results = cached.loglikelihood(null + requests, progress)
    scores = np.array([r.logprob for r in results], dtype=float)
    prior = scores[: len(names)]
    table = scores[len(names) :].reshape(len(chosen), len(names)) - prior
    return {o.uid: names[int(np.argmax(row))] for o, row in zip(chosen, table, strict=True)}


def human_labels(failures: Sequence[Observation], taxonomy: Taxonomy) -> dict[str, set[str]]:
    """The taxonomy categories humans tagged on each failure (tags resolved through aliases)."""
    labels: dict[str, set[str]] = {}
    for o in failures:
        cats = {c for c in (taxonomy.resolve(t) for t in o.tags) if c is not None}
        if cats:
            labels[o.uid] = cats
    return labels


def judge_agreement(
    judged: dict[str, str],
    humans: dict[str, set[str]],
    taxonomy: Taxonomy,
    seed: int = 0,
    units: Mapping[str, Hashable] | None = None,
) -> JudgeAgreement | None:
    """Agreement of the judge with human tags on the failures both labelled.

    Accuracy counts the judge right when its category is among the human tags. Cohen's kappa
    (scikit-learn) uses the failures with exactly one human category, with a BCa bootstrap
    interval over those failures from MIN_KAPPA_UNITS of them. ``units`` maps a failure's uid
    to its independent unit (its item): failures of one item (judged by several people) are
    then resampled together, and the accuracy interval is clustered by them.
    """
    from sklearn.metrics import cohen_kappa_score

    both = [uid for uid in judged if uid in humans]
    if not both:
        return None
    hits = [judged[uid] in humans[uid] for uid in both]
    unit: dict[str, Hashable] = {uid: (units or {}).get(uid, uid) for uid in both}
    single = [uid for uid in both if len(humans[uid]) == 1]
    human = [next(iter(humans[uid])) for uid in single]
    machine = [judged[uid] for uid in single]
    names = taxonomy.names()
    kappa: float | None = None
    low: float | None = None
    high: float | None = None
    note: str | None = None
    if single:
        kappa = _kappa(human, machine, names, cohen_kappa_score)
        groups = [unit[uid] for uid in single]
        if len(set(groups)) >= MIN_KAPPA_UNITS:
            low, high = _kappa_interval(human, machine, names, groups, seed)
        else:
            note = f"{len(set(groups))} item(s): a kappa interval needs {MIN_KAPPA_UNITS}"
    confusion: dict[str, dict[str, int]] = {}
    for h, m in zip(human, machine, strict=True):
        confusion.setdefault(h, {}).setdefault(m, 0)
        confusion[h][m] += 1
    per_category = _per_category(judged, humans, both, names)
    return JudgeAgreement(
        n=len(both),
        accuracy=sum(hits) / len(both),
        accuracy_ci=share_over(hits, [unit[uid] for uid in both]),
        cohen_kappa=kappa,
        kappa_ci_low=low,
        kappa_ci_high=high,
        kappa_note=note,
        per_category=per_category,
        confusion=confusion,
    )


def _per_category(
    judged: dict[str, str], humans: dict[str, set[str]], both: list[str], names: list[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall and support of the judge for each category it or humans used."""
    per_category: dict[str, dict[str, float]] = {}
    for name in names:
        tp = sum(judged[u] == name and name in humans[u] for u in both)
        said = sum(judged[u] == name for u in both)
        truth = sum(name in humans[u] for u in both)
        if said or truth:
            per_category[name] = {
                "precision": tp / said if said else 0.0,
                "recall": tp / truth if truth else 0.0,
                "support": float(truth),
            }
    return per_category


#: Fewest independent failures (items) for a bootstrap interval of the judge's kappa.
MIN_KAPPA_UNITS = 10


def _kappa_interval(
    human: list[str], machine: list[str], names: list[str], groups: list[Hashable], seed: int
) -> tuple[float, float]:
    """BCa interval of Cohen's kappa, resampling the failures' units (clusters)."""
    from sklearn.metrics import cohen_kappa_score

    h_arr, m_arr = np.array(human), np.array(machine)
    clusters = None if len(set(groups)) == len(groups) else [str(g) for g in groups]
    return bootstrap_ci(
        np.arange(len(human)),
        lambda idx: _kappa(
            list(h_arr[idx.astype(int)]), list(m_arr[idx.astype(int)]), names, cohen_kappa_score
        ),
        n_boot=500,
        seed=seed,
        clusters=clusters,
    )


def _kappa(human: list[str], machine: list[str], names: list[str], fn: Callable) -> float:
    """Cohen's kappa; 1 when both give the same single category throughout (sklearn: NaN)."""
    value = float(fn(human, machine, labels=names))
    if value != value:
        return 1.0 if human == machine else 0.0
    return value
