"""whetstone's log-likelihoods, accuracies and rolling perplexity equal lm-evaluation-harness's.

lm-evaluation-harness (PyPI `lm-eval`) is the independent reference: the same model folder is
loaded by its `HFLM` and by whetstone, and both score the same requests.

One deliberate difference: for rolling perplexity lm-evaluation-harness encodes the document
with the tokenizer's default special tokens, so with a BOS-adding tokenizer it scores the BOS
token itself after the BOS prefix. whetstone scores only the document's tokens; the reference
is therefore built with `add_bos_token=False` for rolling requests, which is exactly
whetstone's definition.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data
from whetstone.evaluate.engine import evaluate
from whetstone.models.base import LoglikelihoodRequest, RollingRequest
from whetstone.tasks import load_tasks

lm_eval = pytest.importorskip("lm_eval")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

PAIRS = [
    ("Question: Which gas do plants take in?\nAnswer:", " carbon dioxide"),
    ("Question: Which gas do plants take in?\nAnswer:", " oxygen"),
    ("To be, or not to be, ", "that is the question."),  # trailing space moves to continuation
    ("", "The quick brown fox"),  # empty context: scored after the prefix token
    ("Sync your notes", " across devices with one account. " * 3),
]


def _hflm(folder: Path, batch_size: int, **kwargs: object) -> object:
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=str(folder), batch_size=batch_size, device="cpu", dtype="float32", **kwargs
    )


def _reference_loglikelihood(
    folder: Path, pairs: list[tuple[str, str]]
) -> list[tuple[float, bool]]:
    from lm_eval.api.instance import Instance

    lm = _hflm(folder, batch_size=3)
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=i)
        for i, pair in enumerate(pairs)
    ]
    return [(float(lp), bool(g)) for lp, g in lm.loglikelihood(requests)]  # type: ignore[attr-defined]


def _reference_rolling(folder: Path, texts: list[str], max_length: int) -> list[float]:
    from lm_eval.api.instance import Instance

    lm = _hflm(folder, batch_size=2, max_length=max_length, add_bos_token=False)
    requests = [
        Instance(request_type="loglikelihood_rolling", doc={}, arguments=(t,), idx=i)
        for i, t in enumerate(texts)
    ]
    return [float(x) for x in lm.loglikelihood_rolling(requests)]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_dir: Path) -> object:
    from whetstone.models.hf import HFModel

    return HFModel(tiny_lm_dir, device="cpu", dtype="float32", batch_size=3, max_length=64)


def test_loglikelihood_equals_lm_eval(tiny_lm_dir: Path, tiny_model: object) -> None:
    ours = tiny_model.loglikelihood([LoglikelihoodRequest(c, x) for c, x in PAIRS])  # type: ignore[attr-defined]
    ref = _reference_loglikelihood(tiny_lm_dir, PAIRS)
    for got, (lp, greedy) in zip(ours, ref, strict=True):
        assert got.logprob == pytest.approx(lp, abs=1e-4)
        assert got.is_greedy == greedy


def test_rolling_equals_lm_eval_when_stride_is_max_length(
    tiny_lm_dir: Path, tiny_model: object
) -> None:
    texts = [
        "To be, or not to be, that is the question. " * 9,
        "Water boils at one hundred degrees.",
        "Billing questions go to the support team within a day. " * 4,
    ]
    ours = tiny_model.loglikelihood_rolling([RollingRequest(t, 32, 32) for t in texts])  # type: ignore[attr-defined]
    ref = _reference_rolling(tiny_lm_dir, texts, max_length=32)
    # lm-eval sums in float32: compare to its precision
    assert [r.logprob for r in ours] == pytest.approx(ref, rel=1e-6, abs=1e-4)
    assert ours[0].n_tokens > 64  # the long document really spans several windows


def test_overlapping_windows_see_more_context(tiny_model: object) -> None:
    """stride < max_length scores the same tokens, each with at least as much context."""
    text = "To be, or not to be, that is the question. " * 12
    disjoint, overlapping, full = tiny_model.loglikelihood_rolling(  # type: ignore[attr-defined]
        [RollingRequest(text, 32, 32), RollingRequest(text, 32, 8), RollingRequest(text, 64, 64)]
    )
    assert disjoint.n_tokens == overlapping.n_tokens == full.n_tokens
    assert overlapping.logprob != pytest.approx(disjoint.logprob, abs=1e-3)


def _mc_task(
    tmp_path: Path, data: Path, answer_expr: str, answer_field: str, labels: bool
) -> tuple[Path, dict]:
    yaml_text = (
        f"name: mc\nkind: multiple_choice\ndata: {{path: {json.dumps(str(data))}}}\n"
        'prompt: "Question: {question}\\nAnswer:"\nchoices: choices\n'
        f"answer: {answer_field}\n" + ("answer_labels: labels\n" if labels else "")
    )
    path = tmp_path / "mc.yaml"
    path.write_text(yaml_text)
    lm_eval_task = {
        "task": "ws_mc",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": answer_expr,
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }
    return path, lm_eval_task


def _compare_mc(
    folder: Path, model: object, task_yaml: Path, lm_eval_task: dict, tmp_path: Path, limit: int
) -> None:
    from lm_eval import simple_evaluate

    ref = simple_evaluate(
        model=_hflm(folder, batch_size=4),
        tasks=[lm_eval_task],
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
    )
    ref_samples = sorted(ref["samples"]["ws_mc"], key=lambda s: s["doc_id"])  # type: ignore[index]
    ev = evaluate(model, [task_yaml], limit=limit, db=f"sqlite:///{tmp_path / 'ws.db'}")  # type: ignore[arg-type]
    ours = [s for s in ev.samples if s.task == "mc"]
    assert len(ours) == len(ref_samples) == limit
    for mine, theirs in zip(ours, ref_samples, strict=True):
        ref_lls = [float(r[0]) for r in theirs["filtered_resps"]]
        assert mine.loglikelihoods == pytest.approx(ref_lls, abs=1e-3)
        assert mine.metrics["acc"] == theirs["acc"]
        assert mine.metrics["acc_norm"] == theirs["acc_norm"]
    ref_acc = ref["results"]["ws_mc"]["acc,none"]  # type: ignore[index]
    assert ev.result.tasks["mc"].metrics["acc"].value == pytest.approx(ref_acc)


def test_multiple_choice_equals_lm_eval_on_example_data(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from whetstone.data import examples_dir
    from whetstone.models.hf import HFModel

    # the model's own max length (512), as HFLM uses: prompts here exceed 64 tokens
    model = HFModel(tiny_lm_dir, device="cpu", dtype="float32", batch_size=3)

    data = examples_dir() / "support_mc.jsonl"
    task_yaml, lm_eval_task = _mc_task(tmp_path, data, "{{answer}}", "answer", labels=False)
    _compare_mc(tiny_lm_dir, model, task_yaml, lm_eval_task, tmp_path, limit=12)


@pytest.mark.slow
def test_embedded_model_equals_lm_eval_on_arc_easy(default_model_dir: Path, tmp_path: Path) -> None:
    from whetstone.models.hf import HFModel

    data = shared_data("arc_easy_test.jsonl")
    model = HFModel(default_model_dir, device="cpu", dtype="float32", batch_size=8)
    task_yaml, lm_eval_task = _mc_task(
        tmp_path, data, "{{labels.index(answer)}}", "answer", labels=True
    )
    _compare_mc(default_model_dir, model, task_yaml, lm_eval_task, tmp_path, limit=20)


@pytest.mark.slow
def test_embedded_model_rolling_bits_per_byte_equals_lm_eval(default_model_dir: Path) -> None:
    from whetstone.models.hf import HFModel
    from whetstone.tasks.loading import chunk_text

    text = shared_data("tinyshakespeare.txt").read_text(encoding="utf-8")
    docs = chunk_text(text, 1500)[:2]
    model = HFModel(default_model_dir, device="cpu", dtype="float32", batch_size=2)
    ours = model.loglikelihood_rolling([RollingRequest(d, 256, 256) for d in docs])
    ref = _reference_rolling(default_model_dir, docs, max_length=256)
    n_bytes = sum(len(d.encode()) for d in docs)
    bpb_ours = -sum(r.logprob for r in ours) / n_bytes / math.log(2)
    bpb_ref = -sum(ref) / n_bytes / math.log(2)
    assert bpb_ours == pytest.approx(bpb_ref, rel=1e-4)
    assert np.isfinite(bpb_ours)


def test_benchmark_task_files_match_lm_eval_prompts() -> None:
    """The ARC-Easy benchmark file uses lm-evaluation-harness's arc_easy prompt and choices."""
    repo = Path(__file__).resolve().parents[2]
    (task,) = load_tasks(repo / "benchmarks" / "arc_easy.yaml")
    assert task.prompt == "Question: {question}\nAnswer:"
    assert task.choice_prefix == " "
