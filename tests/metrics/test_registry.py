"""The metric registry: one declaration per metric, aliases, directions, plug-ins."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from whetstone import metrics as M
from whetstone.errors import ConfigError

# Written out independently of the declarations: lm-evaluation-harness and Optuna conventions.
LOWER = {
    "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ece", "ece_debiased",
    "brier", "latency_ms", "params", "size_mb", "loss",
}  # fmt: skip
HIGHER = {
    "acc", "acc_norm", "accuracy", "exact_match", "token_f1", "rouge_l", "bleu", "chrf",
    *(f"{s}_{a}" for s in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted")),
    "precision_binary", "recall_binary", "f1_binary",
}  # fmt: skip


def test_every_declared_metric_has_the_expected_direction() -> None:
    assert set(M.METRICS.names()) == LOWER | HIGHER
    for name in LOWER:
        assert not M.higher_is_better(name) and M.direction(name) == "minimize", name
    for name in HIGHER:
        assert M.higher_is_better(f"task/{name}") and M.direction(name) == "maximize", name


def test_short_names_are_aliases_of_the_macro_averages() -> None:
    for short in ("precision", "recall", "f1"):
        assert M.canonical_name(short) == f"{short}_macro"
        assert M.canonical_name(f"intents/{short}") == f"intents/{short}_macro"
        assert M.metric_spec(short).name == f"{short}_macro"
    assert M.canonical_name("t/my_own_metric") == "t/my_own_metric"  # unknown: unchanged


def test_defaults_per_kind_are_the_lists_tasks_had() -> None:
    """Before the registry: tasks/schema.py DEFAULT_METRICS, with classification's precision,
    recall and f1 (which selected every average by prefix) now named by their averages."""
    assert M.default_metrics("perplexity") == [
        "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte",
    ]  # fmt: skip
    assert M.default_metrics("multiple_choice") == ["acc", "acc_norm", "brier", "ece"]
    scores = ("precision", "recall", "f1")
    averages = [f"{s}_{a}" for a in ("macro", "micro", "weighted") for s in scores]
    assert M.default_metrics("classification") == ["accuracy", *averages, "ece"]
    assert M.default_metrics("generation") == ["exact_match", "token_f1", "bleu", "chrf", "rouge_l"]
    assert M.default_metrics("cost") == []
    assert M.metrics_for("cost") == ["latency_ms", "params", "size_mb"]


def test_headlines_and_ratio_units() -> None:
    assert M.headline_metrics("classification") == ["accuracy", "f1_macro"]
    assert set(M.headline_metrics()) == {
        "perplexity", "bits_per_byte", "acc", "accuracy", "exact_match", "f1_macro",
    }  # fmt: skip
    units = {spec.name: (spec.unit, spec.transform) for spec in M.ratio_metrics()}
    assert units == {
        "perplexity": ("n_tokens", "exp_neg"), "word_perplexity": ("n_words", "exp_neg"),
        "byte_perplexity": ("n_bytes", "exp_neg"), "bits_per_byte": ("n_bytes", "bits"),
    }  # fmt: skip
    r = np.array([-np.log(2), -1.0])
    assert M.apply_transform(M.metric_spec("bits_per_byte"), r) == pytest.approx(
        [1.0, 1 / np.log(2)]
    )
    assert M.apply_transform(M.metric_spec("perplexity"), r) == pytest.approx([2.0, np.e])
    with pytest.raises(ValueError, match="not a corpus ratio"):
        M.apply_transform(M.metric_spec("bleu"), r)
    assert M.metric_spec("chrf").scale == 100 and M.metric_spec("acc").scale == 1


def test_unknown_names_get_a_did_you_mean() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown metric 'perplexty' \(did you mean 'perplexity'"
    ):
        M.metric_spec("perplexty")
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'"):
        M.check_metric("intents/acuracy")


def test_check_metric_resolves_aliases_and_refuses_other_kinds_metrics() -> None:
    assert M.check_metric("intents/f1") == "intents/f1_macro"
    assert M.check_metric("recall", "classification") == "recall_macro"
    other_kind = r"'acc' is not reported by classification tasks \(did you mean 'accuracy'"
    with pytest.raises(ConfigError, match=other_kind):
        M.check_metric("acc", "classification")


def test_a_metric_from_an_entry_point_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed distribution declaring ``[whetstone.metrics]`` in its entry_points.txt."""
    (tmp_path / "toxicity_plugin.py").write_text(
        "from whetstone.metrics import MetricSpec\n"
        "SPEC = MetricSpec(name='toxicity', kinds=('generation',), direction='lower',\n"
        "    aggregation='mean', interval='bca', paired_test='sign_flip', aliases=('tox',),\n"
        "    description='share of toxic answers')\n"
    )
    info = tmp_path / "toxicity_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toxicity-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[whetstone.metrics]\ntoxicity = toxicity_plugin:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(M, "METRICS", M._registry())  # a fresh registry reads entry points anew
    monkeypatch.delitem(sys.modules, "toxicity_plugin", raising=False)
    assert M.metric_spec("t/tox").name == "toxicity"
    assert M.direction("toxicity") == "minimize" and "toxicity" in M.metrics_for("generation")
    assert M.check_metric("tox", "generation") == "toxicity"


def test_a_plugin_registers_a_metric_by_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(M, "METRICS", M._registry())
    spec = M.MetricSpec(
        name="win_rate", kinds=("generation",), direction="higher", aggregation="proportion",
        interval="wilson", paired_test="mcnemar_exact", description="judge prefers the answer",
    )  # fmt: skip
    assert M.register_metric(spec) is spec and M.higher_is_better("t/win_rate")
    with pytest.raises(ValueError, match="registered twice"):
        M.register_metric(spec.model_copy(update={"name": "acc"}))
