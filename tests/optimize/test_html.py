"""HTML sections of fine-tune and study results: self-contained, well formed, escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from whetstone.evaluate.compare import Comparison, MetricComparison
from whetstone.optimize import FinetuneResult, StudyResult, render_html_section
from whetstone.optimize.results import TrainingSummary, TrialRecord

pytest.importorskip("matplotlib")

VOID = {"br", "img", "meta", "link", "input", "hr", "col"}


class Balance(HTMLParser):
    """Checks that every opened element is closed in order; collects tag names."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack[-3:], tag)
        self.stack.pop()


def balanced(html: str) -> set[str]:
    parser = Balance()
    parser.feed(html)
    parser.close()
    assert parser.stack == []
    return parser.tags


def comparison() -> Comparison:
    metric = MetricComparison(
        task="t<1>",
        metric="accuracy",
        a=0.5,
        b=0.8,
        diff=0.3,
        ci_low=0.2,
        ci_high=0.4,
        p_value=0.001,
        test="mcnemar_exact",
        n=100,
    )
    return Comparison(run_a="base1", run_b="tuned1", metrics=[metric], unpaired={})


def test_finetune_section():
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 6)]
    history += [{"step": s, "eval_t<1>/accuracy": 0.5 + s / 20} for s in (2, 4)]
    training = TrainingSummary(
        model_path="/m",
        task_type="classification",
        method="lora",
        base_model="minilm",
        train_task="t<1>",
        train_examples=10,
        trainable_parameters=5,
        total_parameters=50,
        steps=5,
        epochs=1.0,
        train_seconds=1.5,
        train_samples=40,
        monitor="t<1>/accuracy",
        best_metric=0.7,
        best_step=4,
        history=history,
    )
    result = FinetuneResult(
        name="run <x>",
        created_at=datetime.now(UTC),
        output_dir="/o",
        training=training,
        comparison=comparison(),
    )
    html = render_html_section(result)
    tags = balanced(html)
    assert {"section", "svg", "table"} <= tags and "script" not in tags
    assert html.count("<svg") == 2 and "run &lt;x&gt;" in html and "t&lt;1&gt;" in html
    assert "<tr class='sig'>" in html and "0.3" in html


def test_study_section():
    trials = [
        TrialRecord(
            number=i,
            state="PRUNED" if i == 2 else "COMPLETE",
            params={"lr": 10.0**-i, "bs": 16},
            values=None if i == 2 else [0.5 + i / 10],
            intermediate={1: 0.4, 2: 0.45 + i / 20},
            compute={"train_samples": 100.0},
        )
        for i in range(4)
    ]
    result = StudyResult(
        study_name="s",
        storage="sqlite:///x.db",
        trainer="finetune",
        directions=["maximize"],
        objectives=["t/accuracy"],
        sampler="tpe",
        pruner="median",
        search_space={},
        n_trials=4,
        trials=trials,
        best_trials=[3],
        best_params=trials[3].params,
        best_values=[0.8],
        importances={"t/accuracy": {"lr": 0.9, "bs": 0.1}},
        total_compute={"train_samples": 400.0},
        base_values=[0.5],
        comparison=comparison(),
        created_at=datetime.now(UTC),
    )
    html = render_html_section(result)
    tags = balanced(html)
    assert "script" not in tags and html.count("<svg") == 3
    assert "optimization history" in html and "parameter importances for t/accuracy" in html
    assert "Best trial 3" in html and "train_samples 400" in html
    # svg ids are unique on a page with several plots
    import re

    ids = re.findall(r'id="([^"]+)"', html + render_html_section(result))
    assert len(ids) == len(set(ids))
