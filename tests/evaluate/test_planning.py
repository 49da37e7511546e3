"""`plan_items` against statsmodels' power solvers, and its count checked by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import proportion_confint

from whetstone.evaluate.compare import compare_samples
from whetstone.evaluate.gate import Margin
from whetstone.evaluate.planning import ONE_RUN, PAIRED, plan_items
from whetstone.records import MetricValue, ModelIdentity, RunResult, SampleRecord, TaskResult


def _records(metric: str, values: np.ndarray) -> list[SampleRecord]:
    return [
        SampleRecord(task="t", id=str(i), prompt="", metrics={metric: float(v)})
        for i, v in enumerate(values)
    ]


def _run(metric: str, kind: str, value: float, low: float, high: float, n: int) -> RunResult:
    mv = MetricValue(value=value, ci_low=low, ci_high=high, n=n)
    return RunResult(
        run_id="r",
        model=ModelIdentity(backend="fake", name="m", hash="h"),
        tasks={"t": TaskResult(kind=kind, metrics={metric: mv})},
    )


def test_one_run_plans_like_two_independent_proportions() -> None:
    """Accuracy 0.8 on 500 items (Wilson interval): without a paired pilot the plan assumes
    independent errors, i.e. statsmodels' two-sample normal power for a 0.05 drop."""
    low, high = proportion_confint(400, 500, method="wilson")
    run = _run("acc", "multiple_choice", 0.8, low, high, 500)
    (row,) = plan_items(run, Margin(value=0.05))
    effect = 0.05 / np.sqrt(0.8 * 0.2)
    expected = NormalIndPower().solve_power(effect_size=effect, alpha=0.05, power=0.8)
    assert row.source == ONE_RUN and row.needed == pytest.approx(expected, rel=0.05)
    assert row.detectable_now == pytest.approx(2.8016 * np.sqrt(2 * 0.16 / 500), rel=0.05)
    # a relative drop is a share of the value
    (rel,) = plan_items(run, Margin.model_validate("5%"))
    assert rel.drop == pytest.approx(0.04)


def test_a_paired_pilot_plans_like_a_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.3, 400)
    b = a + rng.normal(0.0, 0.2, 400)  # correlated runs: the paired spread is 0.2, not 0.42
    cmp = compare_samples(_records("score", a), _records("score", b))
    run = _run("score", "generation", float(a.mean()), 0.4, 0.6, 400)
    (row,) = plan_items(run, Margin(value=0.03), paired=cmp, metrics=["score"])
    sd = float(np.std(b - a, ddof=1))
    expected = TTestPower().solve_power(effect_size=0.03 / sd, alpha=0.05, power=0.8)
    assert row.source == PAIRED and row.spread == pytest.approx(sd, rel=0.08)
    assert row.needed == pytest.approx(expected, rel=0.15)


def _cells(rng: np.random.Generator, n: int, drop: float) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes disagreeing on 12% of items, B worse than A by ``drop``."""
    cells = rng.choice(4, size=n, p=[0.68, 0.06 + drop / 2, 0.06 - drop / 2, 0.20])
    return np.isin(cells, [0, 1]).astype(float), np.isin(cells, [0, 2]).astype(float)


def test_the_planned_count_detects_the_drop_about_80_percent_of_the_time() -> None:
    """From a 300-item pilot of two 0/1 runs, the planned items find a true 0.05 drop with the
    exact McNemar test in about 80% of simulated data sets."""
    a, b = _cells(np.random.default_rng(1), 300, 0.0)
    cmp = compare_samples(_records("acc", a), _records("acc", b))
    run = _run("acc", "multiple_choice", float(a.mean()), 0.7, 0.8, 300)
    (row,) = plan_items(run, Margin(value=0.05), paired=cmp)
    assert row.needed is not None and 250 < row.needed < 700
    found = []
    for rep in range(200):
        x, y = _cells(np.random.default_rng(100 + rep), row.needed, 0.05)
        m = compare_samples(_records("acc", x), _records("acc", y)).metrics[0]
        found.append(m.p_value < 0.05 and m.diff < 0)
    assert 0.68 < float(np.mean(found)) < 0.92
