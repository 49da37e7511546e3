"""Naming the best candidate under the user's rule, and the regression gate.

Selection works on point estimates (the report shows each with its interval and the paired
comparison with the baseline); the gate works on paired intervals against a non-inferiority
margin per guarded metric (`whetstone.evaluate.gate`): pass, fail or inconclusive.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from whetstone.evaluate.gate import Comparer, GateResult, Guard, judge
from whetstone.metrics import higher_is_better
from whetstone.pipeline.schema import Constraint, GateSpec, SelectionRule


class CandidateResult(BaseModel):
    """One model in the comparison: where it came from, its run and its metric values."""

    name: str
    origin: str
    model: str
    run_id: str | None = None
    tasks: list[str] = Field(default_factory=list)
    # `task/metric` -> value, and the costs latency_ms, params, size_mb
    metrics: dict[str, float] = Field(default_factory=dict)
    # `task/metric` -> [ci_low, ci_high]
    intervals: dict[str, list[float | None]] = Field(default_factory=dict)
    costs: dict[str, float | int | str | None] = Field(default_factory=dict)
    artifact: str | None = None
    error: str | None = None


class Verdict(BaseModel):
    """Whether one candidate meets the rule, why not, and its objective value."""

    name: str
    eligible: bool
    objective: float | None = None
    reasons: list[str] = Field(default_factory=list)


class SelectionResult(BaseModel):
    """The rule, each candidate's verdict and the name of the selected candidate (or None)."""

    rule: SelectionRule
    direction: str
    selected: str | None
    verdicts: list[Verdict]


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _check(c: Constraint, cand: CandidateResult, base: CandidateResult) -> str | None:
    """Why `cand` breaks the constraint, or None when it meets it."""
    value = cand.metrics.get(c.metric)
    if value is None or math.isnan(value):
        return f"{c.metric} was not measured"
    if c.min is not None and value < c.min:
        return f"{c.metric} = {_fmt(value)} is below the minimum {_fmt(c.min)}"
    if c.max is not None and value > c.max:
        return f"{c.metric} = {_fmt(value)} is above the maximum {_fmt(c.max)}"
    if c.max_drop is not None:
        ref = base.metrics.get(c.metric)
        if ref is None:
            return f"{c.metric} was not measured for the baseline"
        drop = (ref - value) if higher_is_better(c.metric) else (value - ref)
        if drop > c.max_drop + 1e-12:
            return (
                f"{c.metric} = {_fmt(value)} is {_fmt(drop)} worse than the baseline's "
                f"{_fmt(ref)} (at most {_fmt(c.max_drop)} allowed)"
            )
    return None


def select_candidate(
    rule: SelectionRule, baseline: CandidateResult, candidates: list[CandidateResult]
) -> SelectionResult:
    """The best eligible candidate by the rule's objective; ties go to the smaller model (size
    on disk, then latency, then parameters), then to the earlier one."""
    maximize = rule.direction or ("maximize" if higher_is_better(rule.objective) else "minimize")
    pool = ([baseline] if rule.include_baseline else []) + candidates
    verdicts: list[Verdict] = []
    for cand in pool:
        reasons = [cand.error] if cand.error else []
        reasons += [r for c in rule.constraints if (r := _check(c, cand, baseline))]
        value = cand.metrics.get(rule.objective)
        if value is None or math.isnan(value):
            reasons.append(f"objective {rule.objective} was not measured")
            value = None
        verdicts.append(
            Verdict(name=cand.name, eligible=not reasons, objective=value, reasons=reasons)
        )
    eligible = [v for v in verdicts if v.eligible and v.objective is not None]
    sign = 1.0 if maximize == "maximize" else -1.0
    costs = {c.name: c.metrics for c in pool}

    def rank(v: Verdict) -> tuple[float, ...]:
        # ties on the objective go to the cheaper model: smaller, then faster, then fewer params
        tie = [-costs[v.name].get(k, math.inf) for k in ("size_mb", "latency_ms", "params")]
        return (round(sign * (v.objective or 0.0), 12), *tie)

    best = max(eligible, key=rank, default=None)
    return SelectionResult(
        rule=rule,
        direction=maximize,
        selected=best.name if best else None,
        verdicts=verdicts,
    )


def gated_candidates(
    spec: GateSpec, selection: SelectionResult | None, names: list[str]
) -> list[str]:
    """The candidates the gate checks: all of them, or the selected one unless it is the
    baseline (without a selection rule, all)."""
    if spec.candidates == "all" or selection is None:
        return list(names)
    return [selection.selected] if selection.selected not in (None, "baseline") else []


def apply_gate(spec: GateSpec, compare: Comparer, gated: list[str]) -> GateResult:
    """The verdict of every guarded metric of each gated candidate against the baseline."""
    guards = [Guard(c, m, spec.margin_of(m)) for c in gated for m in spec.metrics]
    result = judge(guards, compare, alpha=spec.alpha)
    return result.model_copy(update={"metrics": list(spec.metrics)})
