"""Selection rules against a brute-force pandas reference, and the gate's spec."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from whetstone.evaluate.gate import Margin, sample_comparer
from whetstone.pipeline.schema import Constraint, GateSpec, SelectionRule
from whetstone.pipeline.selection import (
    CandidateResult,
    apply_gate,
    gated_candidates,
    select_candidate,
)
from whetstone.records import SampleRecord


def population(seed: int, n: int = 12) -> tuple[CandidateResult, list[CandidateResult]]:
    rng = np.random.default_rng(seed)
    models = [
        CandidateResult(
            name=f"m{i}",
            origin="model",
            model=f"m{i}",
            metrics={
                "t/accuracy": float(rng.uniform(0.5, 0.9)),
                "t/perplexity": float(rng.uniform(10, 30)),
                "latency_ms": float(rng.uniform(5, 100)),
                "params": float(rng.integers(10, 300) * 1e6),
            },
        )
        for i in range(n)
    ]
    base = models[0].model_copy(update={"name": "baseline", "origin": "baseline"})
    return base, models[1:]


def frame(base: CandidateResult, cands: list[CandidateResult]) -> pd.DataFrame:
    rows = [{"name": c.name, **c.metrics} for c in [base, *cands]]
    return pd.DataFrame(rows).set_index("name")


@pytest.mark.parametrize("seed", range(5))
def test_highest_accuracy_with_latency_at_most(seed: int) -> None:
    base, cands = population(seed)
    rule = SelectionRule(
        objective="t/accuracy", constraints=[Constraint(metric="latency_ms", max=50)]
    )
    df = frame(base, cands)
    expected = df[df.latency_ms <= 50]["t/accuracy"].idxmax()
    got = select_candidate(rule, base, cands)
    assert got.selected == expected and got.direction == "maximize"
    for v in got.verdicts:
        assert v.eligible == (df.loc[v.name, "latency_ms"] <= 50)


@pytest.mark.parametrize("seed", range(5))
def test_smallest_model_within_one_point_of_the_baseline(seed: int) -> None:
    base, cands = population(seed)
    rule = SelectionRule(
        objective="params",
        constraints=[Constraint(metric="t/accuracy", max_drop=0.01)],
        include_baseline=False,
    )
    df = frame(base, cands).drop(index="baseline")
    ok = df[df["t/accuracy"] >= base.metrics["t/accuracy"] - 0.01]
    got = select_candidate(rule, base, cands)
    assert got.direction == "minimize"
    assert got.selected == (ok["params"].idxmin() if len(ok) else None)


def test_lower_is_better_metrics_and_drops_follow_their_direction() -> None:
    base, cands = population(1)
    rule = SelectionRule(
        objective="t/accuracy", constraints=[Constraint(metric="t/perplexity", max_drop=0.5)]
    )
    got = select_candidate(rule, base, cands)
    df = frame(base, cands)
    ok = df[df["t/perplexity"] <= base.metrics["t/perplexity"] + 0.5]
    assert got.selected == ok["t/accuracy"].idxmax()


def test_unmeasured_metrics_and_failed_candidates_are_not_eligible() -> None:
    base, cands = population(2, n=3)
    cands[0].metrics.pop("latency_ms")
    cands[1].error = "evaluation failed: boom"
    rule = SelectionRule(
        objective="t/accuracy",
        constraints=[Constraint(metric="latency_ms", max=1e9)],
        include_baseline=False,
    )
    got = select_candidate(rule, base, cands)
    assert got.selected is None
    reasons = {v.name: v.reasons for v in got.verdicts}
    assert reasons["m1"] == ["latency_ms was not measured"]
    assert reasons["m2"][0] == "evaluation failed: boom"


def _records(values: np.ndarray) -> list[SampleRecord]:
    return [
        SampleRecord(task="t", id=str(i), prompt="", metrics={"accuracy": float(v)})
        for i, v in enumerate(values)
    ]


def test_the_gate_reads_each_metrics_margin_and_checks_every_candidate() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.8).astype(float)
    worse = a.copy()
    worse[np.flatnonzero(a)[:60]] = 0  # 60 items broken, none fixed: 30 points worse
    runs = {"worse": ("w", _records(worse)), "same": ("s", _records(a))}
    compare = sample_comparer(_records(a), runs)
    spec = GateSpec(metrics=["t/accuracy"], candidates="all", margin=0.05)
    gate = apply_gate(spec, compare, ["worse", "same"])
    assert {c.candidate: c.verdict for c in gate.checks} == {"worse": "fail", "same": "pass"}
    assert gate.verdict == "fail" and gate.tests == 2 and gate.metrics == ["t/accuracy"]
    # a margin larger than the drop, for this metric only, lets it pass
    lenient = GateSpec(metrics=["t/accuracy"], margins={"accuracy": "60%"})
    assert lenient.margin_of("t/accuracy") == Margin(value=0.6, relative=True)
    assert apply_gate(lenient, compare, ["worse"]).verdict == "pass"


def test_gate_specs_refuse_the_old_tolerance_and_unknown_margins() -> None:
    with pytest.raises(ValueError, match="'tolerance' is now 'margin'"):
        GateSpec.model_validate({"metrics": ["t/accuracy"], "tolerance": 0.1})
    with pytest.raises(ValueError, match="'t/f1' is not one of the guarded metrics"):
        GateSpec.model_validate({"metrics": ["t/accuracy"], "margins": {"t/f1": 0.1}})
    spec = GateSpec(metrics=["t/accuracy", "t/f1"])
    assert spec.metrics == ["t/accuracy", "t/f1_macro"]  # the alias resolved by the registry
    base, cands = population(3, n=3)
    sel = select_candidate(SelectionRule(objective="t/accuracy"), base, cands)
    assert gated_candidates(spec, sel, ["m1", "m2"]) == (
        [] if sel.selected == "baseline" else [sel.selected]
    )
    assert gated_candidates(spec, None, ["m1", "m2"]) == ["m1", "m2"]


def test_ties_go_to_the_smaller_then_faster_model() -> None:
    def cand(name: str, size: float, latency: float) -> CandidateResult:
        metrics = {"t/accuracy": 0.9, "size_mb": size, "latency_ms": latency}
        return CandidateResult(name=name, origin="model", model=name, metrics=metrics)

    base = cand("baseline", 500, 100).model_copy(update={"metrics": {"t/accuracy": 0.5}})
    pool = [cand("big", 90, 5), cand("small-slow", 50, 9), cand("small-fast", 50, 4)]
    got = select_candidate(SelectionRule(objective="t/accuracy"), base, pool)
    assert got.selected == "small-fast"
