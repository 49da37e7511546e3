"""The conformance checks behind `whetstone.testing` (see its docstring)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from whetstone.errors import ModelError
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    RollingRequest,
)

CONTEXTS = ("The capital of France is", "Question: what is two plus two?\nAnswer:")
CONTINUATIONS = (" Paris", " four", " a city in Europe")
DOCUMENT = "The quick brown fox jumps over the lazy dog. " * 6


def _offers(call: Callable[[], Any]) -> Any:
    """The call's result, or None when the backend refuses the capability with a ModelError."""
    try:
        return call()
    except ModelError:
        return None


def check_backend(model: LanguageModel) -> None:
    """A backend's promises: an identity; log-likelihoods that are finite, at most 0, count
    tokens and do not depend on which requests share a call or in what order; rolling
    log-likelihoods likewise; greedy generation that is repeatable, stops at a stop sequence
    and returns it removed; and a chat prompt that holds each message."""
    who = f"backend {model.identity.backend!r} ({model.identity.name})"
    ident = model.identity
    assert ident.backend and ident.name and ident.hash, f"{who}: identity needs backend, name, hash"
    requests = [LoglikelihoodRequest(c, x) for c in CONTEXTS for x in CONTINUATIONS]
    together = _offers(lambda: model.loglikelihood(requests))
    if together is not None:
        assert len(together) == len(requests), f"{who}: one result per log-likelihood request"
        for r in together:
            assert math.isfinite(r.logprob) and r.logprob <= 1e-6, f"{who}: log-prob {r.logprob}"
            assert r.n_tokens >= 1 and isinstance(r.is_greedy, bool), f"{who}: {r}"
        alone = [model.loglikelihood([q])[0] for q in requests[:3]]
        for a, b in zip(together[:3], alone, strict=True):
            assert math.isclose(a.logprob, b.logprob, rel_tol=1e-4, abs_tol=1e-3), (
                f"{who}: a request's log-prob depends on the others in its call"
            )
        backwards = model.loglikelihood(requests[::-1])[::-1]
        for a, c in zip(together, backwards, strict=True):
            assert math.isclose(a.logprob, c.logprob, rel_tol=1e-4, abs_tol=1e-3), (
                f"{who}: results do not follow the order of the requests"
            )
    rolling = _offers(lambda: model.loglikelihood_rolling([RollingRequest(DOCUMENT, 32, 16)]))
    if rolling is not None:
        (doc,) = rolling
        assert math.isfinite(doc.logprob) and doc.logprob < 0, f"{who}: rolling {doc.logprob}"
        assert doc.n_tokens > 32, f"{who}: a document longer than a window counts every token"
    _check_generation(model, who)
    prompt = _offers(lambda: model.chat_prompt([{"role": "user", "content": "Hello there"}]))
    if prompt is not None:
        assert "Hello there" in prompt, f"{who}: the chat prompt drops the user's message"


def _check_generation(model: LanguageModel, who: str) -> None:
    request = GenerationRequest(prompt=CONTEXTS[1], max_new_tokens=12)
    first = _offers(lambda: model.generate([request]))
    if first is None:
        return
    assert len(first) == 1 and isinstance(first[0], str), f"{who}: one string per request"
    assert model.generate([request]) == first, f"{who}: greedy generation is not repeatable"
    if len(first[0]) >= 2:
        stop = first[0][1:3] if len(first[0]) >= 3 else first[0][1:]
        stopped = model.generate([GenerationRequest(CONTEXTS[1], 12, stop=(stop,))])[0]
        assert stop not in stopped, f"{who}: the output holds its stop sequence {stop!r}"
        assert first[0].startswith(stopped), f"{who}: a stop sequence changed the text before it"


def check_metric(name: str) -> None:
    """A registered metric's declaration is consistent: its defaults are among its kinds, a
    ratio or corpus metric names its per-item unit or transform only with that aggregation, and
    every alias resolves to it."""
    from whetstone.metrics import METRICS

    spec = METRICS.get(name)
    who = f"metric {spec.name!r}"
    assert spec.kinds, f"{who}: names no task kind that produces it"
    assert set(spec.default_for) <= set(spec.kinds), f"{who}: a default for a kind it lacks"
    if spec.transform is not None or spec.unit is not None:
        assert spec.aggregation == "ratio", f"{who}: a unit or transform needs aggregation ratio"
        assert spec.unit is not None, f"{who}: a transform needs the per-item unit"
    if spec.aggregation == "cost":
        assert spec.interval == spec.paired_test == "none", f"{who}: a cost has no interval"
    assert spec.scale > 0, f"{who}: scale {spec.scale}"
    assert spec.description.strip(), f"{who}: no description"
    for alias in spec.aliases:
        assert METRICS.canonical(alias) == spec.name, f"{who}: alias {alias!r} resolves elsewhere"


def check_detector(name: str) -> None:
    """A registered detector answers True, False or None for every kind of answer without
    raising, gives the same verdict twice, and stays silent (False or None) on a plain,
    correct answer."""
    from whetstone.diagnose.detectors import DETECTORS, TaskOutputs
    from whetstone.diagnose.schema import Observation

    check = DETECTORS.get(name)
    assert DETECTORS.metadata(name).get("description"), f"detector {name!r}: no description"
    base = {"source": "sample", "origin": "r", "task": "t", "item_id": "1", "uid": "r:t:1"}
    answers = [
        Observation(**base, kind="generation", output="", generated=True, reference="Paris"),
        Observation(**base, kind="generation", output="Paris.", generated=True, reference="Paris"),
        Observation(**base, kind="generation", output="no no no no no no no no", generated=True),
        Observation(
            **base,
            kind="classification",
            output="sports",
            gold_label="world",
            predicted_label="sports",
        ),
        Observation(**base, kind="multiple_choice", output="B", gold_label="A"),
    ]
    task = TaskOutputs.of(answers)
    for o in answers:
        verdict = check(o, task)
        assert verdict in (True, False, None), f"detector {name!r}: verdict {verdict!r}"
        assert check(o, task) == verdict, f"detector {name!r}: not repeatable"
    plain = answers[1]
    assert not check(plain, TaskOutputs.of([plain])), f"detector {name!r} fires on 'Paris.'"


def check_executor(name: str) -> None:
    """A registered executor gives exactly a local run's numbers on the example
    classification task with the fake model (values and intervals)."""
    from whetstone.data import examples_dir
    from whetstone.evaluate.engine import evaluate
    from whetstone.evaluate.executor import make_executor

    task = examples_dir() / "support_intents.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for which in ("local", name):
            db = f"sqlite:///{Path(tmp) / f'{which}.db'}"
            ev = evaluate("fake:2", [task], limit=12, db=db, executor=make_executor(which))
            runs.append(ev.result.tasks)
    assert runs[0] == runs[1], f"executor {name!r}: its numbers differ from a local run's"


def check_step(name: str) -> None:
    """A registered step's function, config model, result model and renderer import, and the
    renderer turns a result into HTML text."""
    from whetstone.steps import STEPS

    spec = STEPS.get(name)
    assert callable(spec.load(name, "run")), f"step {name!r}: its function is not callable"
    config = spec.load(name, "config")
    assert config is None or hasattr(config, "model_validate"), f"step {name!r}: config model"
    result = spec.load(name, "result")
    assert hasattr(result, "model_validate"), f"step {name!r}: result model is not pydantic"
    assert callable(spec.load(name, "render")), f"step {name!r}: its renderer is not callable"
