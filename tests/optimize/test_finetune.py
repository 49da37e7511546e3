"""`finetune` end to end on tiny models: a classifier on an encoder and LoRA on a causal LM, the
best-K checkpoint policy, early stopping, resume, the stored result; and bad configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.stats import binomtest

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.optimize import FinetuneResult, finetune, render_html_section
from whetstone.optimize.callbacks import best_steps
from whetstone.store import Store

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def write_config(tmp_path: Path, base: Path, sentiment_dir: Path, **fields: Any) -> Path:
    """A fine-tune of ``base`` on the sentiment task; ``fields`` override the defaults."""
    config: dict[str, Any] = {
        "model": str(base),
        "data": {
            "task": str(sentiment_dir / "sent.yaml"),
            "path": str(sentiment_dir / "sent_train.jsonl"),
            "max_length": 32,
        },
        "training": {
            "epochs": 6,
            "batch_size": 16,
            "learning_rate": 0.01,
            "evaluations_per_epoch": 1,
            "keep_checkpoints": 2,
        },
        "eval": {"tasks": [str(sentiment_dir / "sent.yaml")]},
        "early_stopping": {"metric": "accuracy", "patience": 2},
        "output_dir": str(tmp_path / "out"),
        "db": f"sqlite:///{tmp_path}/db.sqlite",
    }
    config.update(fields)
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def val_rows(sentiment_dir: Path) -> list[dict]:
    return [
        json.loads(line) for line in (sentiment_dir / "sent_val.jsonl").read_text().splitlines()
    ]


def mcnemar_p(store: Store, run_a: str, run_b: str) -> float:
    """Exact McNemar from the stored samples, with scipy's binomial test."""
    a = {s.id: s.metrics["accuracy"] for s in store.get_samples(run_a)}
    b = {s.id: s.metrics["accuracy"] for s in store.get_samples(run_b)}
    only_b = sum(1 for k in a if b[k] > a[k])
    only_a = sum(1 for k in a if a[k] > b[k])
    return float(binomtest(only_b, only_a + only_b, 0.5).pvalue)


@pytest.mark.slow
def test_classifier_finetune_beats_its_untrained_head(tmp_path, tiny_bert_dir, sentiment_dir):
    result = finetune(write_config(tmp_path, tiny_bert_dir, sentiment_dir))
    t = result.training
    assert (t.task_type, t.method, t.train_examples) == ("classification", "full", 96)
    store = Store(f"sqlite:///{tmp_path}/db.sqlite")
    acc = next(m for m in result.comparison.metrics if m.metric == "accuracy")
    assert acc.b >= acc.a + 0.3 and acc.p_value < 0.01
    assert acc.p_value == pytest.approx(mcnemar_p(store, result.base_run, result.tuned_run))
    assert "untrained head" in store.get_run(result.base_run).model.name

    # the saved model, run directly with transformers, gives the stored accuracy
    tokenizer = transformers.AutoTokenizer.from_pretrained(t.model_path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(t.model_path).eval()
    rows = val_rows(sentiment_dir)
    with torch.no_grad():
        batch = tokenizer([r["text"] for r in rows], return_tensors="pt", padding=True)
        predicted = model(**batch).logits.argmax(-1).numpy()
    expected = float(np.mean(predicted == np.array([r["label"] for r in rows])))
    assert result.tuned_metrics["sent"]["accuracy"].value == pytest.approx(expected)
    assert model.config.id2label == {0: "negative", 1: "positive"}

    # early stopping: the accuracy plateaued, so training ended before its 36 steps
    evals = [(h["step"], h["eval_sent/accuracy"]) for h in t.history if "eval_sent/accuracy" in h]
    best = max(v for _, v in evals)
    assert t.stopped_early and t.steps < 36
    assert t.best_step == min(s for s, v in evals if v == best) and t.best_metric == best
    assert len(evals) == t.steps // 6 and evals[-3][1] == best  # patience 2 after the best

    # only the best 2 checkpoints are left; the saved model is the best one
    ranked = sorted(evals, key=lambda sv: (-sv[1], sv[0]))
    kept = sorted(int(Path(c).name.split("-")[1]) for c in t.checkpoints)
    on_disk = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "out/checkpoints").iterdir())
    assert kept == on_disk == sorted(s for s, _ in ranked[:2])
    from safetensors.torch import load_file

    best_weights = load_file(
        tmp_path / f"out/checkpoints/checkpoint-{t.best_step}/model.safetensors"
    )
    saved = load_file(Path(t.model_path) / "model.safetensors")
    assert all(torch.equal(best_weights[k], saved[k]) for k in best_weights)

    stored = store.get_artifact("finetune", "out")
    assert stored is not None and FinetuneResult.model_validate(stored.payload) == result
    assert FinetuneResult.model_validate_json((tmp_path / "out/result.json").read_text()) == result
    html = render_html_section(result)
    assert html.count("<svg") == 2 and "sent/accuracy" in html and "mcnemar_exact" in html


@pytest.mark.slow
def test_lora_on_a_causal_lm_learns_the_responses(tmp_path, tiny_lm_dir, sentiment_dir):
    path = write_config(
        tmp_path,
        tiny_lm_dir,
        sentiment_dir,
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        training={"epochs": 4, "batch_size": 16, "learning_rate": 0.01},
        early_stopping=None,
    )
    result = finetune(path)
    t = result.training
    assert (t.task_type, t.method) == ("causal_lm", "lora")
    assert t.trainable_parameters < t.total_parameters / 4
    losses = [h["loss"] for h in t.history if "loss" in h]
    assert losses[-1] < losses[0] / 2
    acc = next(m for m in result.comparison.metrics if m.metric == "accuracy")
    assert acc.b > acc.a and acc.p_value < 0.05

    # a normal model (adapter merged) and the adapter alone, which reproduce each other
    from peft import PeftModel

    saved = transformers.AutoModelForCausalLM.from_pretrained(t.model_path).eval()
    assert not (Path(t.model_path) / "adapter_config.json").exists()
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    adapted = PeftModel.from_pretrained(base, t.adapter_path).merge_and_unload().eval()
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        torch.testing.assert_close(saved(ids).logits, adapted(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_a_finetune_resumes_from_its_newest_checkpoint(tmp_path, tiny_bert_dir, sentiment_dir):
    first = write_config(
        tmp_path,
        tiny_bert_dir,
        sentiment_dir,
        training={"max_steps": 4, "batch_size": 16, "evaluations_per_epoch": 3},
        eval={"tasks": []},
        early_stopping=None,
    )
    one = finetune(first)
    assert [p.name for p in (tmp_path / "out/checkpoints").iterdir()] == [
        "checkpoint-2",
        "checkpoint-4",
    ]
    more = write_config(
        tmp_path,
        tiny_bert_dir,
        sentiment_dir,
        training={"max_steps": 6, "batch_size": 16, "evaluations_per_epoch": 3},
        eval={"tasks": []},
        early_stopping=None,
    )
    two = finetune(more, resume=True)
    assert two.training.steps == 6
    # the first four steps were not trained again: their logged losses are the first run's
    first_losses = [(h["step"], h["loss"]) for h in one.training.history if "loss" in h]
    assert [(h["step"], h["loss"]) for h in two.training.history if "loss" in h][:2] == first_losses


def test_best_steps_rank_by_metric_then_step():
    history = [
        {"step": 2, "eval_m": 0.5},
        {"step": 4, "eval_m": 0.9},
        {"step": 6, "eval_m": 0.9},
        {"step": 8, "eval_m": 0.7},
        {"step": 8, "loss": 0.1},
    ]
    assert best_steps(history, "eval_m", True, [2, 4, 6, 8], 2) == [4, 6]
    assert best_steps(history, "eval_m", False, [2, 4, 6, 8], 2) == [2, 8]
    assert best_steps(history, None, True, [2, 4, 6, 8], 3) == [4, 6, 8]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trainig": {}}, r"finetune.yaml:\d+: unknown key 'trainig' \(did you mean 'training'"),
        (
            {"training": {"epochs": 0}},
            r"finetune.yaml:\d+: field 'training.epochs': .*greater than 0",
        ),
        ({"eval": {"tasks": []}}, r"early_stopping needs eval.tasks"),
        ({"lora": {"r": 0}}, r"field 'lora.r'"),
        ({"model": "./nowhere"}, r"model: './nowhere' does not exist"),
        (
            {"early_stopping": {"metric": "accuracy", "task": "other"}},
            r"no eval task named 'other'",
        ),
    ],
)
def test_bad_finetune_configs_fail_in_one_line(
    tmp_path, tiny_bert_dir, sentiment_dir, fields, message
):
    path = write_config(tmp_path, tiny_bert_dir, sentiment_dir, **fields)
    with pytest.raises(WhetstoneError, match=message) as err:
        finetune(path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_encoder_cannot_learn_a_generation_task(tmp_path, tiny_bert_dir):
    examples = Path(__file__).resolve().parents[2] / "src/whetstone/data/examples"
    path = tmp_path / "finetune.yaml"
    config = {"model": str(tiny_bert_dir), "data": {"task": str(examples / "support_qa.yaml")}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a causal LM"):
        finetune(path)


def test_a_causal_lm_gets_a_classification_head(tmp_path, tiny_lm_dir, sentiment_dir):
    from whetstone.models import load_model
    from whetstone.models.classifier import SequenceClassifier

    path = write_config(
        tmp_path,
        tiny_lm_dir,
        sentiment_dir,
        task="classification",
        training={"max_steps": 2, "batch_size": 16},
        early_stopping=None,
        eval={"tasks": [str(sentiment_dir / "sent.yaml")], "limit": 12},
    )
    result = finetune(path)
    t = result.training
    assert t.task_type == "classification" and t.steps == 2
    config = json.loads((Path(t.model_path) / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    model = load_model(t.model_path, batch_size=5)
    assert isinstance(model, SequenceClassifier)
    texts = [r["text"] for r in val_rows(sentiment_dir)[:12]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(t.model_path)
    direct = transformers.AutoModelForSequenceClassification.from_pretrained(t.model_path).eval()
    with torch.no_grad():  # one text at a time: no padding to get wrong
        expected = np.array(
            [
                torch.softmax(direct(**tokenizer(x, return_tensors="pt")).logits[0], -1).numpy()
                for x in texts
            ]
        )
    np.testing.assert_allclose(model.probabilities(texts), expected, atol=1e-5)
    assert result.comparison is not None and result.comparison.metrics[0].n == 12
