"""Gathering observations: failures by task kind, item texts, task columns, feedback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import whetstone
from whetstone.diagnose.failures import (
    item_texts,
    load_task_data,
    observations_from_feedback,
    observations_from_samples,
    parse_criterion,
)
from whetstone.errors import ConfigError
from whetstone.records import FeedbackJudgment, SampleRecord

EXAMPLES = Path(whetstone.__file__).parent / "data" / "examples"


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[SampleRecord]]:
    db = tmp_path_factory.mktemp("failures") / "db.sqlite"
    ev = whetstone.evaluate("fake", [EXAMPLES / "suite.yaml"], db=f"sqlite:///{db}")
    return ev.result.run_id, ev.samples


def _jsonl(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (EXAMPLES / name).read_text().splitlines() if line]


def test_failures_by_kind(example_run: tuple[str, list[SampleRecord]]) -> None:
    run_id, samples = example_run
    obs = observations_from_samples(run_id, samples)
    by_uid = {o.uid: o for o in obs}
    assert len(by_uid) == len(samples)
    docs = [s for s in samples if s.task == "support_docs"]
    bpb = np.array([s.metrics["bits_per_byte"] for s in docs])
    threshold = np.percentile(bpb, 90)
    for s in samples:
        o = by_uid[f"{run_id}:{s.task}:{s.id}"]
        expected = {
            "support_mc": s.metrics.get("acc") == 0.0,
            "support_intents": s.metrics.get("accuracy") == 0.0,
            "support_qa": s.metrics.get("token_f1", 1.0) < 0.5,
            "support_docs": s.metrics.get("bits_per_byte", 0.0) > threshold,
        }[s.task]
        assert o.failed == expected, s.task
    kinds = {o.task: o.kind for o in obs}
    assert kinds == {
        "support_docs": "perplexity",
        "support_mc": "multiple_choice",
        "support_intents": "classification",
        "support_qa": "generation",
    }


def test_what_each_kind_shows(example_run: tuple[str, list[SampleRecord]]) -> None:
    run_id, samples = example_run
    obs = {o.uid: o for o in observations_from_samples(run_id, samples)}
    mc_rows = {str(r["id"]): r for r in _jsonl("support_mc.jsonl")}
    for s in samples:
        o = obs[f"{run_id}:{s.task}:{s.id}"]
        if s.task == "support_mc":
            row = mc_rows[s.id]
            choices = row["choices"]
            assert isinstance(choices, list)
            assert o.output == choices[s.prediction]
            assert o.reference == choices[int(row["answer"])]  # type: ignore[call-overload]
            assert o.gold_label == "ABCDEFG"[int(row["answer"])]  # type: ignore[call-overload]
            assert o.text == row["question"]  # the template "Question: ...\nAnswer:" is gone
            assert not o.generated
        elif s.task == "support_intents":
            assert o.predicted_label == s.prediction and o.gold_label == s.gold
        elif s.task == "support_qa":
            assert o.generated and o.output == s.prediction and o.references == s.gold


def test_item_texts_drop_fewshot_examples(example_run: tuple[str, list[SampleRecord]]) -> None:
    """Few-shot prompts: the item's own message is recovered from the prompt alone."""
    _, samples = example_run
    intents = [s for s in samples if s.task == "support_intents"]
    rows = {str(r["id"]): r["text"] for r in _jsonl("support_intents.jsonl")}
    texts = item_texts([s.prompt for s in intents])
    assert texts == [rows[s.id] for s in intents]


def test_item_texts_keep_word_boundaries() -> None:
    assert item_texts(["Q: apple pie?\nA:", "Q: apricot jam?\nA:"]) == [
        "apple pie?",
        "apricot jam?",
    ]
    assert item_texts(["only one"]) == ["only one"]


def test_task_data_columns_and_texts() -> None:
    data = load_task_data([EXAMPLES / "suite.yaml"])
    mc = data.columns["support_mc"]
    first = next(iter(mc.values()))
    assert "topic" in first and "question" in first
    assert "answer" not in first and "choices" not in first  # the gold is not an attribute
    rows = {str(r["id"]): r for r in _jsonl("support_mc.jsonl")}
    assert {i: c["topic"] for i, c in mc.items()} == {i: r["topic"] for i, r in rows.items()}
    assert data.texts["support_mc"] == {i: r["question"] for i, r in rows.items()}
    assert data.notes == []


def test_task_data_notes_a_changed_task() -> None:
    data = load_task_data([EXAMPLES / "support_mc.yaml"], {"support_mc": "0" * 64})
    assert data.notes and "differs from the evaluated one" in data.notes[0]


def test_user_criteria(example_run: tuple[str, list[SampleRecord]]) -> None:
    run_id, samples = example_run
    crit = [parse_criterion("token_f1<0.2"), parse_criterion("brier>p75")]
    obs = observations_from_samples(run_id, samples, criteria=crit)
    qa = {o.item_id: o for o in obs if o.task == "support_qa"}
    for s in samples:
        if s.task == "support_qa":
            assert qa[s.id].failed == (s.metrics["token_f1"] < 0.2)
    mc = [s for s in samples if s.task == "support_mc"]
    bound = np.percentile([s.metrics["brier"] for s in mc], 75)
    failed = {o.item_id: o.failed for o in obs if o.task == "support_mc"}
    assert failed == {s.id: s.metrics["brier"] > bound for s in mc}


@pytest.mark.parametrize("text", ["token_f1", "f1 < abc", "<0.5", "bpb>p150", "x=1"])
def test_bad_criterion(text: str) -> None:
    with pytest.raises(ConfigError, match="failure criterion"):
        parse_criterion(text)


def _judgment(i: int, **kw: object) -> FeedbackJudgment:
    base: dict[str, object] = {
        "campaign": "c1",
        "mode": "review",
        "item_id": f"item-{i}",
        "participant": f"p{i % 2}",
        "model": "m",
        "prompt": f"question {i}",
        "output": f"answer {i}",
    }
    return FeedbackJudgment.model_validate({**base, **kw})


def test_feedback_observations() -> None:
    judgments = [
        _judgment(0, thumbs=False, comment="wrong fact"),
        _judgment(1, likert=5),
        _judgment(2, likert=2, tags=["reasoning"]),
        _judgment(3, mode="arena", arena_outcome="loss", position=1, model_version="v2"),
        _judgment(4, thumbs=True, correction="answer 4"),
        _judgment(5, thumbs=True, correction="a better answer"),
    ]
    obs = observations_from_feedback(judgments)
    assert [o.failed for o in obs] == [j.is_failure for j in judgments]
    assert [o.failed for o in obs] == [True, False, True, True, False, True]
    assert obs[5].reference == "a better answer"
    assert obs[3].columns == {"model": "m@v2", "participant": "p1", "position": 1}
    assert obs[2].tags == ["reasoning"] and obs[0].comment == "wrong fact"
    assert len({o.uid for o in obs}) == len(obs)
    assert obs[1].score == 1.0 and obs[2].score == 0.25
