"""The report's summary columns come from the metric registry's headline metrics."""

from __future__ import annotations

from datetime import datetime

from whetstone.pipeline.records import PipelineResult
from whetstone.pipeline.selection import CandidateResult
from whetstone.report.tables import headline_metrics


def test_without_a_rule_or_gate_each_task_shows_its_headline_metric() -> None:
    metrics = {
        "mc/acc_norm": 0.5, "mc/acc": 0.6, "intents/precision_macro": 0.4,
        "intents/accuracy": 0.7, "docs/word_perplexity": 30.0, "docs/perplexity": 12.0,
        "odd/score": 1.0, "latency_ms": 3.0,
    }  # fmt: skip
    base = CandidateResult(
        name="baseline", origin="model", model="fake", tasks=["mc", "intents", "docs", "odd"],
        metrics=metrics,
    )  # fmt: skip
    now = datetime.now()
    result = PipelineResult(
        name="p", config={}, workdir=".", db="sqlite://", started_at=now, finished_at=now,
        seconds=0.0, baseline=base,
    )  # fmt: skip
    assert headline_metrics(result) == [
        "mc/acc", "intents/accuracy", "docs/perplexity", "odd/score", "latency_ms",
    ]  # fmt: skip
