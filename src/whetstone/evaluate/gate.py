"""Non-inferiority verdicts: is a candidate no worse than the baseline by more than a margin?

Each guarded metric gets a margin (in the metric's units, or a share of the baseline's value)
and one of three verdicts from its paired interval of B - A:

* **pass**: the worse end of the 1 - alpha interval is within the margin;
* **fail**: the better end of the 1 - alpha/m interval is beyond it and the paired test of
  no difference (exact McNemar, permutation) rejects at alpha/m (m = every (candidate, metric)
  tested: Bonferroni, so a false fail anywhere in the gate has chance <= alpha/2);
* **inconclusive**: neither; the data cannot tell.

A pass of the whole gate needs every check to pass, an intersection-union test: each check's
false pass has chance <= alpha/2 and the whole gate's too, without adjustment. Each check also
says what its data could see: the true worsening it fails with 80% power, and the chance that a
candidate equal to the baseline passes (below 80%: more items are needed; ``whetstone plan``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer, model_validator
from scipy import stats as sps

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.evaluate.compare import (
    POWER,
    Comparison,
    MetricComparison,
    compare_samples,
    detectable,
    standard_error,
)
from whetstone.metrics import canonical_name, higher_is_better
from whetstone.records import SampleRecord

Verdict = Literal["pass", "fail", "inconclusive"]
#: The exit status of ``--gate`` for each verdict of the whole gate.
EXIT_STATUS: dict[str, int] = {"pass": 0, "fail": 1, "inconclusive": 3}

_MARGIN = re.compile(r"^\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)\s*(%?)\s*$")


class Margin(BaseModel):
    """How much worse a guarded metric may get: in its own units, or a share of the baseline.

    Written as a number (``0.02``: two points of accuracy) or a percentage (``"3%"``: three
    per cent of the baseline's value, e.g. of its perplexity).
    """

    value: float = Field(ge=0)
    relative: bool = False

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("a margin is a number (0.02) or a percentage ('3%')")
        if isinstance(data, int | float):
            return {"value": float(data)}
        if isinstance(data, str):
            found = _MARGIN.match(data)
            if not found:
                raise ValueError(f"{data!r} is not a margin: expected a number (0.02) or '3%'")
            value = float(found.group(1))
            return {"value": value / 100 if found.group(2) else value, "relative": bool(found[2])}
        return data

    @model_serializer
    def _text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"

    def absolute(self, baseline: float) -> float:
        """The margin in the metric's units, given the baseline's value."""
        return self.value * abs(baseline) if self.relative else self.value


class GateCheck(BaseModel):
    """One guarded metric of one candidate against the baseline."""

    candidate: str
    metric: str
    verdict: Verdict
    reason: str
    margin: str = ""
    # the margin in the metric's units (a relative one taken of the baseline's value)
    margin_abs: float | None = None
    baseline: float | None = None
    value: float | None = None
    diff: float | None = None
    # the 1 - alpha interval of B - A (decides pass) and the 1 - alpha/m one (decides fail)
    ci_low: float | None = None
    ci_high: float | None = None
    strict_low: float | None = None
    strict_high: float | None = None
    p_value: float | None = None
    test: str = ""
    n: int = 0
    # the true worsening this check fails with 80% power, in the metric's units, at the
    # observed spread (for 0/1 metrics: as many items on which the two disagree)
    detectable: float | None = None
    # the chance that a candidate equal to the baseline passes this check
    pass_power: float | None = None

    @property
    def failed(self) -> bool:
        """Whether the candidate is worse than the margin allows, significantly."""
        return self.verdict == "fail"


class GateResult(BaseModel):
    """The gate's verdict over every check: fail if any fails, else inconclusive if any is,
    else pass."""

    verdict: Verdict
    alpha: float = 0.05
    # the (candidate, metric) pairs tested: the Bonferroni divisor of the fail intervals
    tests: int = 0
    metrics: list[str] = Field(default_factory=list)
    checks: list[GateCheck] = Field(default_factory=list)
    message: str = ""

    @model_validator(mode="before")
    @classmethod
    def _older(cls, data: Any) -> Any:
        # results stored before the three verdicts carried `passed` and `spec`
        if isinstance(data, dict) and "verdict" not in data and "passed" in data:
            data = {**data, "verdict": "pass" if data["passed"] else "fail"}
            data.setdefault("metrics", (data.get("spec") or {}).get("metrics", []))
            data["checks"] = [
                {**c, "verdict": "fail" if c.get("failed") else "pass"}
                for c in data.get("checks", [])
            ]
        return data

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 fail, 3 inconclusive."""
        return EXIT_STATUS[self.verdict]


@dataclass(frozen=True)
class Guard:
    """A metric the gate guards for one candidate, with its margin."""

    candidate: str
    metric: str
    margin: Margin


#: (candidate, confidence, TASK/METRIC names) -> its comparison with the baseline, or None.
Comparer = Callable[[str, float, list[str]], Comparison | None]


def _worsening(m: MetricComparison, metric: str) -> tuple[float, float, float]:
    """(point, best end, worst end) of how much worse B is than A, in the metric's units."""
    if higher_is_better(metric):
        return -m.diff, -m.ci_high, -m.ci_low
    return m.diff, m.ci_low, m.ci_high


def _words(x: float) -> str:
    return f"{x:.3g} worse" if x >= 0 else f"{-x:.3g} better"


def _check(
    guard: Guard, loose: MetricComparison, strict: MetricComparison, alpha: float, m: int
) -> GateCheck:
    """The verdict of one guard from its 1 - alpha and 1 - alpha/m intervals."""
    margin = guard.margin.absolute(loose.a)
    point, _, worst = _worsening(loose, guard.metric)
    _, best_strict, _ = _worsening(strict, guard.metric)
    se = standard_error(loose, 1 - alpha)
    z_pass = float(sps.norm.ppf(1 - alpha / 2))
    z_fail = float(sps.norm.ppf(1 - alpha / (2 * m)))
    ok = math.isfinite(se) and se > 0
    pass_power = float(sps.norm.cdf(margin / se - z_pass)) if ok else float(worst <= margin)
    level = f"{100 * (1 - alpha):g}%"
    # the exact paired test must reject too: bootstrap intervals at 1 - alpha/m are too
    # narrow for a handful of items (5-10), and worse than the margin is worse than 0
    if best_strict > margin and loose.p_value < alpha / m:
        verdict: Verdict = "fail"
        reason = (
            f"{_words(point)}, at least {_words(best_strict)} "
            f"({100 * (1 - alpha / m):.4g}% interval): beyond the margin {guard.margin}"
        )
    elif worst <= margin:
        verdict = "pass"
        reason = f"at worst {_words(worst)} ({level} interval): within the margin {guard.margin}"
    else:
        verdict = "inconclusive"
        reason = (
            f"{_words(point)}, up to {_words(worst)} ({level} interval): the data cannot tell "
            f"whether it is within the margin {guard.margin}"
        )
    if verdict != "fail" and pass_power < POWER:
        reason += (
            f"; with {loose.n} items a model equal to the baseline passes "
            f"{pass_power:.0%} of the time (whetstone plan says how many are needed)"
        )
    return GateCheck(
        candidate=guard.candidate,
        metric=guard.metric,
        verdict=verdict,
        reason=reason,
        margin=str(guard.margin),
        margin_abs=margin,
        baseline=loose.a,
        value=loose.b,
        diff=loose.diff,
        ci_low=loose.ci_low,
        ci_high=loose.ci_high,
        strict_low=strict.ci_low,
        strict_high=strict.ci_high,
        p_value=loose.p_value,
        test=loose.test,
        n=loose.n,
        detectable=margin + detectable(se, z_fail) if ok else None,
        pass_power=pass_power,
    )


def _unmeasured(guard: Guard) -> GateCheck:
    return GateCheck(
        candidate=guard.candidate,
        metric=guard.metric,
        verdict="inconclusive",
        margin=str(guard.margin),
        reason="no paired comparison: the metric is not per item or was not measured",
    )


def _message(checks: list[GateCheck], verdict: Verdict, candidates: list[str]) -> str:
    if not candidates:
        return "gate passed: no candidate replaces the baseline"
    if verdict == "pass":
        return (
            f"gate passed: {len(checks)} guarded metric check(s) on {', '.join(candidates)}, "
            "each within its margin"
        )
    named = [c for c in checks if c.verdict == verdict]
    shown = "; ".join(f"{c.candidate} {c.metric}: {c.reason}" for c in named)
    return f"gate {'failed' if verdict == 'fail' else 'inconclusive'}: {shown}"


def judge(guards: Sequence[Guard], compare: Comparer, *, alpha: float = 0.05) -> GateResult:
    """The verdict of every guard, each candidate compared once at 1 - alpha and (when more
    than one check is tested) once more at 1 - alpha/m."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    candidates = list(dict.fromkeys(g.candidate for g in guards))
    names = {c: [g.metric for g in guards if g.candidate == c] for c in candidates}
    loose = {c: compare(c, 1 - alpha, names[c]) for c in candidates}
    found = {
        (g.candidate, g.metric): cmp.find(g.metric)
        for g in guards
        if (cmp := loose[g.candidate]) is not None
    }
    m = max(1, sum(v is not None for v in found.values()))
    strict = loose if m == 1 else {c: compare(c, 1 - alpha / m, names[c]) for c in candidates}
    checks = []
    for g in guards:
        first, second = found.get((g.candidate, g.metric)), strict[g.candidate]
        tight = second.find(g.metric) if second is not None else None
        if first is None or tight is None:
            checks.append(_unmeasured(g))
        else:
            checks.append(_check(g, first, tight, alpha, m))
    verdicts = {c.verdict for c in checks}
    verdict: Verdict = (
        "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
    )
    return GateResult(
        verdict=verdict,
        alpha=alpha,
        tests=m if found else 0,
        metrics=list(dict.fromkeys(g.metric for g in guards)),
        checks=checks,
        message=_message(checks, verdict, candidates),
    )


def sample_comparer(
    baseline: list[SampleRecord],
    candidates: Mapping[str, tuple[str, list[SampleRecord]]],
    *,
    baseline_run: str = "baseline",
    seed: int = 0,
    known: Mapping[str, Comparison] | None = None,
) -> Comparer:
    """A `Comparer` over stored samples: ``candidates`` maps a name to (run id, samples);
    ``known`` holds comparisons already made with the same seed (reused at their level)."""

    def compare(name: str, confidence: float, metrics: list[str]) -> Comparison | None:
        done = (known or {}).get(name)
        if done is not None and math.isclose(done.confidence, confidence):
            return done
        if name not in candidates:
            return None
        run, samples = candidates[name]
        try:
            return compare_samples(
                baseline,
                samples,
                run_a=baseline_run,
                run_b=run,
                seed=seed,
                confidence=confidence,
                only=metrics,
            )
        except WhetstoneError:  # no shared items: nothing to pair
            return None

    return compare


def parse_margins(texts: Sequence[str]) -> tuple[Margin | None, dict[str, Margin]]:
    """``--margin`` values: ``0.02`` or ``3%`` for every metric, ``METRIC=0.02`` or
    ``TASK/METRIC=3%`` for one; (the default, the named ones). A bad one raises ConfigError."""
    default: Margin | None = None
    named: dict[str, Margin] = {}
    for text in texts:
        name, _, value = text.rpartition("=")
        try:
            margin = Margin.model_validate(value)
        except ValueError:
            raise ConfigError(
                f"--margin {text!r}: expected 0.02, 3%, METRIC=0.02 or TASK/METRIC=3%"
            ) from None
        if name:
            named[canonical_name(name.strip())] = margin
        else:
            default = margin
    return default, named


def unmatched_margins(named: Iterable[str], metrics: Sequence[str]) -> list[str]:
    """The margin names (TASK/METRIC or METRIC, aliases resolved) that match none of
    ``metrics``: typos to refuse."""
    known = set(metrics) | {m.split("/", 1)[-1] for m in metrics}
    return [name for name in named if canonical_name(name) not in known]


def margin_for(name: str, default: Margin | None, named: Mapping[str, Margin]) -> Margin | None:
    """The margin of TASK/METRIC: its own, else its metric's, else the default."""
    bare = name.split("/", 1)[-1]
    return named.get(name, named.get(bare, default))
