"""Selection rules and the gate's decision, against a brute-force pandas reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from whetstone.evaluate.compare import Comparison, MetricComparison
from whetstone.pipeline.schema import Constraint, GateSpec, SelectionRule
from whetstone.pipeline.selection import (
    CandidateResult,
    apply_gate,
    gated_candidates,
    select_candidate,
)


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


def comparison(a: np.ndarray, b: np.ndarray) -> Comparison:
    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    p = stats.binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    m = MetricComparison(
        task="t",
        metric="accuracy",
        a=a.mean(),
        b=b.mean(),
        diff=b.mean() - a.mean(),
        ci_low=-1,
        ci_high=1,
        p_value=p,
        test="mcnemar_exact",
        n=len(a),
    )
    return Comparison(run_a="A", run_b="B", metrics=[m], unpaired={})


def test_gate_fails_only_on_significantly_worse() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(200) < 0.8).astype(float)
    worse = a.copy()
    worse[np.flatnonzero(a)[:30]] = 0  # 30 items broken, none fixed
    slightly = a.copy()
    slightly[np.flatnonzero(a)[:2]] = 0
    better = np.ones_like(a)
    spec = GateSpec(metrics=["t/accuracy"], candidates="all")
    cmps = {
        "worse": comparison(a, worse),
        "slightly": comparison(a, slightly),
        "better": comparison(a, better),
    }
    gate = apply_gate(spec, cmps, ["worse", "slightly", "better"])
    status = {c.candidate: c.failed for c in gate.checks}
    assert status == {"worse": True, "slightly": False, "better": False}
    assert not gate.passed and "worse t/accuracy" in gate.message
    # a tolerance larger than the drop lets it pass
    lenient = GateSpec(metrics=["t/accuracy"], tolerance=0.2)
    assert apply_gate(lenient, cmps, ["worse"]).passed


def test_gate_needs_a_paired_comparison_and_checks_the_selected_candidate() -> None:
    spec = GateSpec(metrics=["t/accuracy", "t/f1"])
    a = np.ones(30)
    gate = apply_gate(spec, {"c": comparison(a, a)}, ["c"])
    assert spec.metrics == ["t/accuracy", "t/f1_macro"]  # the alias resolved by the registry
    missing = [c for c in gate.checks if c.metric == "t/f1_macro"]
    assert missing[0].failed and "no paired comparison" in missing[0].reason
    base, cands = population(3, n=3)
    rule = SelectionRule(objective="t/accuracy")
    sel = select_candidate(rule, base, cands)
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


def _with_p(p: float, diff: float = -0.05) -> Comparison:
    m = MetricComparison(
        task="t",
        metric="accuracy",
        a=0.8,
        b=0.8 + diff,
        diff=diff,
        ci_low=-0.1,
        ci_high=0.0,
        p_value=p,
        test="mcnemar_exact",
        n=100,
    )
    return Comparison(run_a="A", run_b="B", metrics=[m], unpaired={})


def test_gate_adjusts_once_over_every_candidate_and_metric() -> None:
    """p = 0.02 and 0.045 are each below 0.05 alone, but not after BH over the three
    candidates tested (adjusted 0.06, 0.0675, 0.9: scipy's false_discovery_control)."""
    spec = GateSpec(metrics=["t/accuracy"], candidates="all")
    cmps = {"c1": _with_p(0.02), "c2": _with_p(0.045), "c3": _with_p(0.9)}
    gate = apply_gate(spec, cmps, ["c1", "c2", "c3"])
    expected = stats.false_discovery_control([0.02, 0.045, 0.9])
    assert [c.p_adjusted for c in gate.checks] == pytest.approx(list(expected))
    assert gate.passed and not any(c.failed for c in gate.checks)
