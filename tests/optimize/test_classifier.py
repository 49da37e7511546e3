"""The sequence-classifier backend: probabilities against transformers run directly, the label
mapping, scoring through `whetstone.evaluate` against scikit-learn, and load_model dispatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.optimize.conftest import sentiment_rows
from whetstone.errors import ModelError
from whetstone.evaluate.engine import evaluate
from whetstone.evaluate.rescore import rescore
from whetstone.models import load_model
from whetstone.models.classifier import SequenceClassifier, is_sequence_classifier

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def save_classifier(tiny_bert_dir: Path, folder: Path, id2label: dict[int, str]) -> Path:
    """A BertForSequenceClassification with these labels, saved to ``folder``.

    Its head separates the two sentiment centroids of the random encoder's pooled outputs (so
    predictions vary from item to item); a third label, if any, gets a zero row.
    """
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_bert_dir)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=len(id2label), id2label=id2label
    ).eval()
    rows = sentiment_rows(40, 1, "v")
    with torch.no_grad():
        batch = tokenizer([r["text"] for r in rows], return_tensors="pt", padding=True)
        pooled = model.bert(**batch).pooler_output
        y = torch.tensor([r["label"] for r in rows])
        pos, neg = pooled[y == 1].mean(0), pooled[y == 0].mean(0)
        w = (pos - neg) / (pos - neg).norm() ** 2
        weight = torch.zeros_like(model.classifier.weight)
        weight[0], weight[1] = -w, w
        bias = torch.zeros_like(model.classifier.bias)
        bias[0], bias[1] = w @ (pos + neg) / 2, -(w @ (pos + neg) / 2)
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(bias)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def direct_probabilities(folder: Path, texts: list[str]) -> np.ndarray:
    """One text at a time, no padding: transformers' own forward and softmax."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0]
            rows.append(torch.softmax(logits.double(), -1).numpy())
    return np.array(rows)


def val_rows(sentiment_dir: Path) -> list[dict]:
    return [
        json.loads(line) for line in (sentiment_dir / "sent_val.jsonl").read_text().splitlines()
    ]


def test_probabilities_equal_transformers_at_any_batch_size(tmp_path, tiny_bert_dir, sentiment_dir):
    folder = save_classifier(tiny_bert_dir, tmp_path / "clf", {0: "negative", 1: "positive"})
    assert is_sequence_classifier(folder) and not is_sequence_classifier(tiny_bert_dir)
    texts = [r["text"] + " and more" * (i % 4) for i, r in enumerate(val_rows(sentiment_dir))]
    expected = direct_probabilities(folder, texts)
    # the test head magnifies the encoder's float rounding (its pooled outputs barely differ)
    model = load_model(str(folder), batch_size=1)
    assert isinstance(model, SequenceClassifier)
    one = model.probabilities(texts)
    np.testing.assert_allclose(one, expected, atol=1e-4)
    model.batch_size = 64
    np.testing.assert_allclose(model.probabilities(texts), one, atol=1e-4)


def test_classification_task_scored_with_class_probabilities(
    tmp_path, tiny_bert_dir, sentiment_dir
):
    from sklearn.metrics import accuracy_score, f1_score

    folder = save_classifier(tiny_bert_dir, tmp_path / "clf", {0: "negative", 1: "positive"})
    rows = val_rows(sentiment_dir)
    probs = direct_probabilities(folder, [r["text"] for r in rows])
    gold = [r["label"] for r in rows]
    predicted = probs.argmax(axis=1)
    db = f"sqlite:///{tmp_path}/db.sqlite"
    ev = evaluate(str(folder), [sentiment_dir / "sent.yaml"], db=db)
    metrics = ev.result.tasks["sent"].metrics
    assert len(set(predicted)) == 2  # both labels are predicted: the check below is not trivial
    assert metrics["accuracy"].value == pytest.approx(accuracy_score(gold, predicted))
    assert metrics["f1_macro"].value == pytest.approx(f1_score(gold, predicted, average="macro"))
    for sample, row, p in zip(ev.samples, rows, probs, strict=True):
        assert sample.prompt == row["text"]  # the task's prompt, no few-shot
        np.testing.assert_allclose(np.exp(sample.loglikelihoods), p, atol=1e-4)
    assert ev.result.model.backend == "hf-classifier"
    # rescoring replays the stored class probabilities (float32, stored as their logs): the
    # same metrics up to that rounding, and no model is loaded
    again, _ = rescore(ev.result.run_id, [sentiment_dir / "sent.yaml"], db=db)
    rescored = {k: v.value for k, v in again.result.tasks["sent"].metrics.items()}
    assert rescored == pytest.approx({k: v.value for k, v in metrics.items()}, rel=1e-5)


@pytest.mark.parametrize(
    "id2label",
    [
        {0: "positive", 1: "negative"},  # verbalizations, in another order
        {0: "1", 1: "0"},  # the task's label keys
        {0: "LABEL_1", 1: "LABEL_0", 2: "neutral"},  # generic names, and a label the task lacks
    ],
)
def test_model_labels_map_to_the_task_labels(tmp_path, tiny_bert_dir, sentiment_dir, id2label):
    folder = save_classifier(tiny_bert_dir, tmp_path / "clf", id2label)
    texts = [r["text"] for r in val_rows(sentiment_dir)]
    direct = direct_probabilities(folder, texts)[:, [1, 0]]  # task order: "0", then "1"
    expected = direct / direct.sum(axis=1, keepdims=True)
    from whetstone.tasks import load_tasks
    from whetstone.tasks.loading import load_items

    task = load_tasks(sentiment_dir / "sent.yaml")[0]
    model = load_model(str(folder))
    assert isinstance(model, SequenceClassifier)
    from whetstone.tasks.prompts import input_text

    items = load_items(task)
    texts = [input_text(task, item) for item in items]
    got = model.label_probabilities(texts, dict(task.labels or {}), task.name)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_unmatched_labels_and_other_task_kinds_are_one_line_errors(
    tmp_path, tiny_bert_dir, sentiment_dir
):
    folder = save_classifier(tiny_bert_dir, tmp_path / "clf", {0: "bad", 1: "good"})
    with pytest.raises(
        ModelError,
        match=r"label '0' \('negative'\) is none of the classifier's labels \(bad, good\)",
    ):
        evaluate(str(folder), [sentiment_dir / "sent.yaml"], db=f"sqlite:///{tmp_path}/db.sqlite")
    docs = Path(__file__).resolve().parents[2] / "src/whetstone/data/examples/support_docs.yaml"
    with pytest.raises(
        ModelError, match="sequence classifier: it answers classification tasks only"
    ):
        evaluate(str(folder), [docs], limit=2, db=f"sqlite:///{tmp_path}/db.sqlite")


def test_a_causal_lm_folder_still_loads_as_a_causal_lm(tiny_lm_dir):
    from whetstone.models.hf import HFModel

    assert isinstance(load_model(str(tiny_lm_dir)), HFModel)
