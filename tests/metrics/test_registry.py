"""The metric registry: one declaration per metric, aliases, directions, plug-ins."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from whetstone import metrics as M
from whetstone.errors import ConfigError
from whetstone.registry import Registry

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


def test_defaults_per_kind_and_ratio_units() -> None:
    assert M.default_metrics("multiple_choice") == ["acc", "acc_norm", "ece", "brier"]
    assert M.default_metrics("perplexity") == [
        "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte",
    ]  # fmt: skip
    assert "f1_macro" in M.default_metrics("classification")
    units = {spec.name: spec.unit for spec in M.ratio_metrics()}
    assert units == {
        "perplexity": "n_tokens", "word_perplexity": "n_words",
        "byte_perplexity": "n_bytes", "bits_per_byte": "n_bytes",
    }  # fmt: skip
    import numpy as np

    bpb = M.apply_transform(M.metric_spec("bits_per_byte"), np.array([-np.log(2)]))
    assert bpb == pytest.approx([1.0])


def test_unknown_names_get_a_did_you_mean() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown metrics 'perplexty' \(did you mean 'perplexity'"
    ):
        M.metric_spec("perplexty")


def test_a_metric_from_an_entry_point_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = M.MetricSpec(
        name="toxicity", kinds=("generation",), direction="lower", aggregation="mean",
        interval="bca", paired_test="sign_flip", description="share of toxic answers",
    )  # fmt: skip
    point = EntryPoint(name="toxicity", value="plugin_module:SPEC", group="whetstone.metrics")
    module = type("module", (), {"SPEC": spec})
    monkeypatch.setitem(__import__("sys").modules, "plugin_module", module)

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [point] if group == "whetstone.metrics" else []

    monkeypatch.setattr("whetstone.registry.entry_points", fake_entry_points)
    fresh: Registry[Any] = Registry("metrics")
    assert "toxicity" in fresh and fresh.get("toxicity").direction == "lower"


def test_a_name_registered_twice_is_refused() -> None:
    reg: Registry[int] = Registry("things")
    reg.register("a", 1, aliases=("b",))
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("b", 2)
    reg.register("lazy", "math:pi")  # type: ignore[arg-type]
    assert reg.get("lazy") == pytest.approx(3.14159, abs=1e-5)
