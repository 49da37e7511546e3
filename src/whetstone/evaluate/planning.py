"""How many items a task needs: from a pilot run (or two), the items that make a given drop
detectable at a given power.

With two runs (baseline and a candidate) the spread is that of the paired per-item differences,
taken from their comparison's interval: for 0/1 metrics it is set by how often the two disagree.
With one run it is sqrt(2) times the run's own per-item spread, which assumes the two models err
independently: an upper bound when (as usual) they make the same mistakes. The same count is
what a gate with margin M needs for a model equal to the baseline to pass with that power: set
the drop to M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel
from scipy import stats as sps

from whetstone.evaluate.compare import Comparison, standard_error
from whetstone.evaluate.gate import Margin
from whetstone.metrics import headline_metrics
from whetstone.records import MetricValue, RunResult

ONE_RUN = "one run: assumes independent errors (an upper bound)"
PAIRED = "two runs: paired"


class PlanRow(BaseModel):
    """One metric of one task: its spread, and the items a drop needs to be detected."""

    task: str
    metric: str
    value: float
    n: int
    drop: float
    # the per-item standard deviation of the paired difference
    spread: float | None
    source: str
    # items for the drop to be detected at the power; None without a spread to plan from
    needed: int | None
    # the drop the current number of items detects at the power
    detectable_now: float | None

    @property
    def name(self) -> str:
        """TASK/METRIC."""
        return f"{self.task}/{self.metric}"


def _z(alpha: float, power: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))


def _row(
    task: str,
    metric: str,
    mv: MetricValue,
    spread: float | None,
    source: str,
    drop: float,
    z: float,
) -> PlanRow:
    sd = spread if spread is not None and spread > 0 and mv.n > 0 else None
    return PlanRow(
        task=task,
        metric=metric,
        value=mv.value,
        n=mv.n,
        drop=drop,
        spread=spread,
        source=source,
        needed=max(2, math.ceil((z * sd / drop) ** 2)) if sd is not None and drop > 0 else None,
        detectable_now=z * sd / math.sqrt(mv.n) if sd is not None else None,
    )


def _one_run_spread(mv: MetricValue) -> float | None:
    """sqrt(2) x the per-item spread behind a run's own 95% interval."""
    if mv.ci_low is None or mv.ci_high is None or mv.n < 2:
        return None
    se = (mv.ci_high - mv.ci_low) / (2 * float(sps.norm.ppf(0.975)))
    return math.sqrt(2) * se * math.sqrt(mv.n)


def _wanted(run: RunResult, metrics: Sequence[str]) -> list[tuple[str, str]]:
    """(task, metric) pairs: the named ones (TASK/METRIC or METRIC), else each task's
    headline metrics."""
    out = []
    for task, tr in run.tasks.items():
        for metric in tr.metrics:
            named = f"{task}/{metric}" in metrics or metric in metrics
            if named or (not metrics and metric in headline_metrics(tr.kind)):
                out.append((task, metric))
    return out


def plan_items(
    run: RunResult,
    drop: Margin,
    *,
    paired: Comparison | None = None,
    metrics: Sequence[str] = (),
    alpha: float = 0.05,
    power: float = 0.8,
) -> list[PlanRow]:
    """Items per task for ``drop`` (absolute, or a share of the run's value) to be found by the
    two-sided paired test at ``alpha`` with ``power``; ``paired`` is the pilot comparison."""
    rows = []
    for task, metric in _wanted(run, metrics):
        mv = run.tasks[task].metrics[metric]
        found = paired.find(f"{task}/{metric}") if paired is not None else None
        spread, source = _one_run_spread(mv), ONE_RUN
        if found is not None and found.mdd is not None and paired is not None:
            spread = standard_error(found, paired.confidence) * math.sqrt(found.n)
            source = PAIRED
        z = _z(alpha, power)
        rows.append(_row(task, metric, mv, spread, source, drop=drop.absolute(mv.value), z=z))
    return rows
