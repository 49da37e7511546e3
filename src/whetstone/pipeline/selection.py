"""Naming the best candidate under the user's rule, and the regression gate.

Selection works on point estimates (the report shows each with its interval and the paired
comparison with the baseline); the gate works on paired tests: a guarded metric fails when the
candidate is worse than the baseline, by more than the tolerance, with a Benjamini-Hochberg
adjusted p-value below alpha.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from pydantic import BaseModel, Field

from whetstone.evaluate.compare import Comparison, MetricComparison
from whetstone.evaluate.statistics import benjamini_hochberg
from whetstone.metrics import higher_is_better
from whetstone.pipeline.metrics import split_metric
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


class GateCheck(BaseModel):
    """One guarded metric of one candidate against the baseline."""

    candidate: str
    metric: str
    baseline: float | None = None
    value: float | None = None
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    test: str = ""
    n: int = 0
    worse: bool = False
    failed: bool
    reason: str


class GateResult(BaseModel):
    """The gate's verdict: passed unless a guarded metric is significantly worse."""

    spec: GateSpec
    passed: bool
    checks: list[GateCheck]
    message: str


def _find(cmp: Comparison, name: str) -> MetricComparison | None:
    task, metric = split_metric(name)
    return next((m for m in cmp.metrics if m.task == task and m.metric == metric), None)


def _gate_one(
    spec: GateSpec, cand: str, cmp: Comparison | None, adjusted: Iterator[float]
) -> list[GateCheck]:
    """The guarded metrics of one candidate; ``adjusted`` yields its BH-adjusted p-values."""
    found = [(_find(cmp, name) if cmp else None) for name in spec.metrics]
    checks: list[GateCheck] = []
    for name, m in zip(spec.metrics, found, strict=True):
        if m is None:
            checks.append(
                GateCheck(
                    candidate=cand,
                    metric=name,
                    failed=True,
                    reason="no paired comparison: the metric is not per item or was not measured",
                )
            )
            continue
        p_adj = float(next(adjusted))
        worse = m.diff < 0 if higher_is_better(name) else m.diff > 0
        failed = worse and abs(m.diff) > spec.tolerance and p_adj < spec.alpha
        if failed:
            reason = f"significantly worse (adjusted p = {p_adj:.3g} < {spec.alpha})"
        elif worse:
            reason = f"worse but not significantly (adjusted p = {p_adj:.3g})"
        else:
            reason = "not worse"
        checks.append(
            GateCheck(
                candidate=cand,
                metric=name,
                baseline=m.a,
                value=m.b,
                diff=m.diff,
                ci_low=m.ci_low,
                ci_high=m.ci_high,
                p_value=m.p_value,
                p_adjusted=p_adj,
                test=m.test,
                n=m.n,
                worse=worse,
                failed=failed,
                reason=reason,
            )
        )
    return checks


def gated_candidates(
    spec: GateSpec, selection: SelectionResult | None, names: list[str]
) -> list[str]:
    """The candidates the gate checks: all of them, or the selected one unless it is the
    baseline (without a selection rule, all)."""
    if spec.candidates == "all" or selection is None:
        return list(names)
    return [selection.selected] if selection.selected not in (None, "baseline") else []


def _adjusted_pvalues(
    spec: GateSpec, comparisons: dict[str, Comparison], gated: list[str]
) -> Iterator[float]:
    """One Benjamini-Hochberg adjustment over every (candidate, metric) tested, in gate order."""
    pvalues = [
        m.p_value
        for name in gated
        if (cmp := comparisons.get(name)) is not None
        for metric in spec.metrics
        if (m := _find(cmp, metric)) is not None
    ]
    return iter(benjamini_hochberg(np.array(pvalues)).tolist() if pvalues else [])


def apply_gate(spec: GateSpec, comparisons: dict[str, Comparison], gated: list[str]) -> GateResult:
    """Check the guarded metrics of each gated candidate against the baseline, with the
    multiplicity controlled over every (candidate, metric) pair at once."""
    adjusted = _adjusted_pvalues(spec, comparisons, gated)
    checks = [c for name in gated for c in _gate_one(spec, name, comparisons.get(name), adjusted)]
    failed = [c for c in checks if c.failed]
    if failed:
        shown = "; ".join(f"{c.candidate} {c.metric}: {c.reason}" for c in failed)
        message = f"gate failed: {shown}"
    elif not gated:
        message = "gate passed: no candidate replaces the baseline"
    else:
        message = (
            f"gate passed: {len(checks)} guarded metric check(s) on {', '.join(gated)}, "
            "none significantly worse than the baseline"
        )
    return GateResult(spec=spec, passed=not failed, checks=checks, message=message)
