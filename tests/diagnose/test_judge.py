"""The LLM judge: calibrated likelihood choice, generated answers, caching, agreement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from whetstone.diagnose.judge import (
    human_labels,
    judge_agreement,
    judge_failures,
    judge_prompt,
    parse_category,
)
from whetstone.diagnose.schema import Observation
from whetstone.diagnose.taxonomy import JudgeSpec, load_taxonomy
from whetstone.models.base import GenerationRequest, LoglikelihoodRequest, LoglikelihoodResult
from whetstone.models.fake import FakeModel
from whetstone.store import Store

TAX = load_taxonomy()


class CountingFake(FakeModel):
    """The fake model, counting the requests it computes."""

    def __init__(self) -> None:
        super().__init__(seed=3)
        self.calls = 0

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: object = None
    ) -> list[LoglikelihoodResult]:
        self.calls += len(requests)
        return super().loglikelihood(requests, progress)  # type: ignore[arg-type]


def _failures(n: int = 12) -> list[Observation]:
    return [
        Observation(
            uid=f"c:{i}",
            source="feedback",
            origin="c",
            task="feedback:c",
            kind="review",
            item_id=str(i),
            prompt=f"What is {i} + {i}?",
            text=f"What is {i} + {i}?",
            output=f"It is {3 * i}.",
            reference=str(2 * i),
            failed=True,
            generated=True,
            tags=(["math"] if i % 3 == 0 else ["hallucination"] if i % 3 == 1 else []),
        )
        for i in range(n)
    ]


def test_likelihood_judge_is_the_calibrated_argmax() -> None:
    failures = _failures()
    model = FakeModel(seed=3)
    spec = JudgeSpec(model="fake", method="likelihood", max_failures=100)
    judged = judge_failures(failures, TAX, spec, model=model)
    names = TAX.names()
    null = judge_prompt(None, TAX)
    prior = np.array(
        [
            r.logprob
            for r in model.loglikelihood([LoglikelihoodRequest(null, f" {n}") for n in names])
        ]
    )
    for o in failures:
        prompt = judge_prompt(o, TAX, spec.max_chars)
        scores = np.array(
            [
                r.logprob
                for r in model.loglikelihood([LoglikelihoodRequest(prompt, f" {n}") for n in names])
            ]
        )
        assert judged[o.uid] == names[int(np.argmax(scores - prior))]


def test_generate_judge_parses_the_answer() -> None:
    failures = _failures(4)
    model = FakeModel(seed=1)
    spec = JudgeSpec(model="fake", method="generate", max_new_tokens=8)
    judged = judge_failures(failures, TAX, spec, model=model)
    for o in failures:
        text = model.generate([GenerationRequest(judge_prompt(o, TAX), 8, ("\n",))])[0]
        assert judged.get(o.uid) == parse_category(text, TAX)


def test_judge_resumes_from_the_cache(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    failures = _failures(6)
    spec = JudgeSpec(model="fake", max_failures=4)
    first, again = CountingFake(), CountingFake()
    a = judge_failures(failures, TAX, spec, model=first, store=store)
    b = judge_failures(failures, TAX, spec, model=again, store=store)
    assert a == b and len(a) == 4
    assert first.calls == 5 * (4 + 1) and again.calls == 0
    # tagged failures are judged first, so agreement can be measured
    tagged = {o.uid for o in failures if o.tags}
    assert set(a) <= tagged


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reasoning", "reasoning"),
        (" Factual/knowledge error", "factual"),
        ("It's a KNOWLEDGE problem, not reasoning", "factual"),
        ("formatting and semantic", "formatting"),
        ("none of these", None),
    ],
)
def test_parse_category(text: str, expected: str | None) -> None:
    assert parse_category(text, TAX) == expected


def test_agreement_against_sklearn() -> None:
    rng = np.random.default_rng(0)
    names = TAX.names()
    humans: dict[str, set[str]] = {}
    judged: dict[str, str] = {}
    for i in range(80):
        truth = names[int(rng.integers(0, 5))]
        humans[f"u{i}"] = {truth} if i % 10 else {truth, names[(names.index(truth) + 1) % 5]}
        judged[f"u{i}"] = truth if rng.random() < 0.6 else names[int(rng.integers(0, 5))]
    judged["extra"] = "semantic"  # judged but not tagged: not counted
    agreement = judge_agreement(judged, humans, TAX)
    assert agreement is not None
    both = [u for u in judged if u in humans]
    assert agreement.n == len(both) == 80
    assert agreement.accuracy == pytest.approx(np.mean([judged[u] in humans[u] for u in both]))
    single = [u for u in both if len(humans[u]) == 1]
    expected = cohen_kappa_score(
        [next(iter(humans[u])) for u in single], [judged[u] for u in single], labels=names
    )
    assert agreement.cohen_kappa == pytest.approx(expected)
    assert agreement.kappa_ci_low is not None and agreement.kappa_ci_high is not None
    assert agreement.kappa_ci_low <= expected <= agreement.kappa_ci_high
    assert sum(sum(row.values()) for row in agreement.confusion.values()) == len(single)


def test_human_labels_resolve_aliases() -> None:
    labels = human_labels(_failures(6), TAX)
    assert labels == {
        "c:0": {"reasoning"},
        "c:1": {"factual"},
        "c:3": {"reasoning"},
        "c:4": {"factual"},
    }
    assert judge_agreement({}, labels, TAX) is None


def test_agreement_with_failures_of_shared_items_resamples_items() -> None:
    """Three people's failures of one item are one unit: the accuracy interval is clustered
    and the kappa interval resamples items; with fewer than ten items it is withheld."""
    rng = np.random.default_rng(3)
    names = TAX.names()
    humans: dict[str, set[str]] = {}
    judged: dict[str, str] = {}
    units: dict[str, str] = {}
    for item in range(30):
        truth = names[int(rng.integers(0, 5))]
        guess = truth if rng.random() < 0.6 else names[int(rng.integers(0, 5))]
        for k in range(3):
            humans[f"u{item}-{k}"], judged[f"u{item}-{k}"] = {truth}, guess
            units[f"u{item}-{k}"] = f"q{item}"
    flat = judge_agreement(judged, humans, TAX)
    clustered = judge_agreement(judged, humans, TAX, units=units)
    assert flat is not None and clustered is not None
    assert clustered.accuracy == flat.accuracy and clustered.cohen_kappa == flat.cohen_kappa
    assert (
        clustered.accuracy_ci.method == "clustered_wilson" and flat.accuracy_ci.method == "wilson"
    )
    width = clustered.accuracy_ci.ci_high - clustered.accuracy_ci.ci_low
    assert width > flat.accuracy_ci.ci_high - flat.accuracy_ci.ci_low
    assert clustered.kappa_ci_low is not None and clustered.kappa_ci_high is not None
    five = {u: f"g{int(item[1:]) % 5}" for u, item in units.items()}  # five groups of items
    few = judge_agreement(judged, humans, TAX, units=five)
    assert few is not None and few.kappa_ci_low is None and few.kappa_note
