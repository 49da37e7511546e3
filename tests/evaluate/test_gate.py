"""Non-inferiority verdicts: their error rates simulated with known truth, Bonferroni over the
checks, margins, and `whetstone compare --margin`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.errors import ConfigError
from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.gate import (
    GateResult,
    Guard,
    Margin,
    judge,
    margin_for,
    parse_margins,
    sample_comparer,
)
from whetstone.records import ModelIdentity, SampleRecord
from whetstone.store import Store

RUNNER = CliRunner()


def _records(task: str, values: np.ndarray) -> list[SampleRecord]:
    return [
        SampleRecord(task=task, id=f"i{i}", prompt="", metrics={"accuracy": float(v)})
        for i, v in enumerate(values)
    ]


def _paired(rng: np.random.Generator, n: int, worsening: float) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and candidate 0/1 outcomes whose true accuracy gap (A - B) is ``worsening``
    (at most 0.1), the two disagreeing on 10% of items: cells both / A only / B only / neither
    with probabilities .70, .05 + w/2, .05 - w/2, .20."""
    half = worsening / 2
    cells = rng.choice(4, size=n, p=[0.70, 0.05 + half, 0.05 - half, 0.20])
    return np.isin(cells, [0, 1]).astype(float), np.isin(cells, [0, 2]).astype(float)


def _verdicts(n: int, worsening: float, margin: float, reps: int, checks: int = 1) -> list[str]:
    """The gate's verdict on ``reps`` simulated data sets with ``checks`` guarded tasks."""
    out = []
    for rep in range(reps):
        rng = np.random.default_rng(rep)
        base: list[SampleRecord] = []
        cand: list[SampleRecord] = []
        for t in range(checks):
            a, b = _paired(rng, n, worsening)
            base += _records(f"t{t}", a)
            cand += _records(f"t{t}", b)
        guards = [Guard("c", f"t{t}/accuracy", Margin(value=margin)) for t in range(checks)]
        compare = sample_comparer(base, {"c": ("c", cand)}, seed=rep)
        out.append(judge(guards, compare).verdict)
    return out


def _share(verdicts: list[str], which: str) -> float:
    return sum(v == which for v in verdicts) / len(verdicts)


def test_a_candidate_worse_by_exactly_the_margin_rarely_passes() -> None:
    """The false pass rate of one check is at most alpha/2 = 2.5% (400 data sets: the
    binomial 99% bound above 2.5% is 4.6%)."""
    verdicts = _verdicts(n=300, worsening=0.05, margin=0.05, reps=400)
    assert _share(verdicts, "pass") <= 0.046


def test_a_candidate_within_the_margin_rarely_fails_even_over_three_checks() -> None:
    """At a worsening equal to the margin, a false fail anywhere among three checks has chance
    at most alpha/2 (Bonferroni); without the adjustment it would be about 7%."""
    verdicts = _verdicts(n=300, worsening=0.05, margin=0.05, reps=300, checks=3)
    assert _share(verdicts, "fail") <= 0.05


def test_an_unchanged_candidate_passes_about_as_often_as_promised() -> None:
    """With no true change the share of passes matches the reported pass_power (normal
    approximation), and a candidate worse by `detectable` (as often in disagreement with the
    baseline) fails about 80% of the time."""
    reps, n, margin = 200, 400, 0.04
    passes, powers = [], []
    for rep in range(reps):
        a, b = _paired(np.random.default_rng(rep), n, 0.0)
        compare = sample_comparer(_records("t", a), {"c": ("c", _records("t", b))}, seed=rep)
        result = judge([Guard("c", "t/accuracy", Margin(value=margin))], compare)
        passes.append(result.verdict == "pass")
        powers.append(result.checks[0].pass_power)
    assert abs(np.mean(passes) - np.mean(powers)) < 0.1
    worse = float(np.mean(powers))
    assert 0.2 < worse < 0.95  # the setting is not trivially powered
    a, b = _paired(np.random.default_rng(0), n, 0.0)
    compare = sample_comparer(_records("t", a), {"c": ("c", _records("t", b))})
    target = judge([Guard("c", "t/accuracy", Margin(value=margin))], compare).checks[0].detectable
    assert target is not None and margin < target < 0.2
    fails = _verdicts(n=n, worsening=round(target, 3), margin=margin, reps=150)
    assert 0.68 < _share(fails, "fail") < 0.95


def _degraded(n: int, broken: int) -> tuple[list[SampleRecord], list[SampleRecord]]:
    a = np.ones(n)
    a[: n // 4] = 0
    b = a.copy()
    b[n // 4 : n // 4 + broken] = 0
    return _records("t", a), _records("t", b)


def test_fail_needs_the_bonferroni_interval_beyond_the_margin() -> None:
    """A drop whose 95% interval lies beyond the margin but whose 97.5% one does not fails
    alone and is inconclusive beside a second check (m = 2)."""
    margin = Margin(value=0.02)
    for broken in range(5, 40):
        base, cand = _degraded(200, broken)
        at_95 = compare_samples(base, cand, confidence=0.95).metrics[0]
        at_975 = compare_samples(base, cand, confidence=0.975).metrics[0]
        if -at_95.ci_high > 0.02 >= -at_975.ci_high:
            break
    else:
        pytest.fail("no drop between the two levels")
    compare = sample_comparer(base, {"c": ("c", cand), "d": ("d", base)})
    alone = judge([Guard("c", "t/accuracy", margin)], compare)
    assert alone.verdict == "fail" and alone.tests == 1
    both = judge([Guard("c", "t/accuracy", margin), Guard("d", "t/accuracy", margin)], compare)
    check = both.checks[0]
    assert both.tests == 2 and check.verdict == "inconclusive"
    assert (check.strict_low, check.strict_high) == pytest.approx((at_975.ci_low, at_975.ci_high))
    assert (check.ci_low, check.ci_high) == pytest.approx((at_95.ci_low, at_95.ci_high))


def test_lower_is_better_metrics_are_judged_the_other_way_and_relative_margins_scale() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(10, 1, 200)
    base = [
        SampleRecord(task="t", id=str(i), prompt="", metrics={"latency_ms": v})
        for i, v in enumerate(x)
    ]
    slower = [
        s.model_copy(update={"metrics": {"latency_ms": s.metrics["latency_ms"] + 2}}) for s in base
    ]
    compare = sample_comparer(base, {"slow": ("slow", slower), "fast": ("fast", base[::-1])})
    # latency is lower-is-better: +2 ms is 20% worse; a 10% margin fails, a 30% one passes
    tight = judge([Guard("slow", "t/latency_ms", Margin.model_validate("10%"))], compare)
    loose = judge([Guard("slow", "t/latency_ms", Margin.model_validate("30%"))], compare)
    assert tight.verdict == "fail" and loose.verdict == "pass"
    assert tight.checks[0].margin_abs == pytest.approx(0.1 * np.mean(x))


def test_an_unmeasured_metric_is_inconclusive_and_no_candidate_passes() -> None:
    base, cand = _degraded(50, 0)
    compare = sample_comparer(base, {"c": ("c", cand)})
    result = judge([Guard("c", "t/f1_macro", Margin(value=0.1))], compare)
    assert result.verdict == "inconclusive" and result.exit_code == 3
    assert "no paired comparison" in result.checks[0].reason
    empty = judge([], compare)
    assert empty.verdict == "pass" and "no candidate replaces the baseline" in empty.message


def test_a_result_stored_before_three_verdicts_still_loads() -> None:
    old = {
        "spec": {"metrics": ["t/accuracy"]},
        "passed": False,
        "checks": [{"candidate": "c", "metric": "t/accuracy", "failed": True, "reason": "x"}],
        "message": "gate failed",
    }
    result = GateResult.model_validate(old)
    assert result.verdict == "fail" and result.checks[0].failed and result.metrics == ["t/accuracy"]


@pytest.mark.parametrize(
    ("text", "value", "relative"),
    [("0.02", 0.02, False), ("3%", 0.03, True), (" 1.5 % ", 0.015, True), (0, 0.0, False)],
)
def test_margins_read_numbers_and_percentages(text: object, value: float, relative: bool) -> None:
    margin = Margin.model_validate(text)
    assert (margin.value, margin.relative) == pytest.approx((value, relative))
    assert Margin.model_validate(margin.model_dump()) == margin
    assert margin.absolute(-20.0) == pytest.approx(20 * value if relative else value)


@pytest.mark.parametrize("text", ["-0.1", "abc", "3%%", True, "1e"])
def test_a_bad_margin_is_refused(text: object) -> None:
    with pytest.raises(ValueError):
        Margin.model_validate(text)


def test_named_margins_override_the_default_by_task_then_metric() -> None:
    default, named = parse_margins(["0.01", "f1=0.05", "qa/exact_match=2%"])
    assert default == Margin(value=0.01)
    assert margin_for("mc/f1_macro", default, named) == Margin(value=0.05)  # alias resolved
    assert margin_for("qa/exact_match", default, named) == Margin(value=0.02, relative=True)
    assert margin_for("mc/acc", default, named) == default
    assert margin_for("mc/acc", None, named) is None
    with pytest.raises(ConfigError, match="--margin 'acc=x'"):
        parse_margins(["acc=x"])


def _stored_runs(tmp_path: Path) -> tuple[str, str, str]:
    """A baseline right on 240 of 300 items and a candidate that breaks 60 more."""
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(db)
    for name, broken in (("base", 0), ("cand", 60)):
        values = np.ones(300)
        values[: 60 + broken] = 0
        model = ModelIdentity(backend="fake", name=name, hash=name)
        store.create_run(f"run-{name}", model, {}, {"t": "h"}, {}, seed=0)
        store.add_samples(f"run-{name}", _records("t", values))
    return db, "run-base", "run-cand"


def test_compare_with_a_margin_prints_json_verdicts_and_exits_with_the_gate(tmp_path: Path) -> None:
    db, a, b = _stored_runs(tmp_path)
    md = tmp_path / "summary.md"
    args = ["compare", a, b, "--db", db, "--margin", "accuracy=0.05", "--json"]
    result = RUNNER.invoke(app, [*args, "--gate", "--summary", str(md)])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    (row,) = payload["metrics"]
    assert row["verdict"] == "fail" and row["margin"] == "0.05" and row["mdd"] > 0
    assert payload["gate"]["verdict"] == "fail" and payload["gate"]["tests"] == 1
    assert "| run-cand | t/accuracy |" in md.read_text(encoding="utf-8")
    generous = RUNNER.invoke(app, ["compare", a, b, "--db", db, "--margin", "0.5", "--gate"])
    assert generous.exit_code == 0 and "gate passed" in generous.output
    typo = RUNNER.invoke(app, ["compare", a, b, "--db", db, "--margin", "acuracy=0.05"])
    assert typo.exit_code == 2 and "no compared metric is called 'acuracy'" in typo.stderr
