"""Names of the quantities a pipeline compares: `TASK/METRIC` from evaluation, plus model costs.

Candidates are judged on evaluation metrics (written `task/metric`, e.g.
`support_intents/accuracy`) and on three costs measured by the pipeline itself:
`latency_ms` (median time to answer one item), `params` (parameter count) and `size_mb`
(weights on disk). Each name knows whether lower or higher is better.
"""

from __future__ import annotations

from whetstone.errors import ConfigError
from whetstone.metrics import check_metric, higher_is_better, metrics_for

#: Costs every candidate gets besides its evaluation metrics.
COST_METRICS = tuple(metrics_for("cost"))

__all__ = ["COST_METRICS", "check_metric_name", "higher_is_better", "split_metric"]


def split_metric(name: str) -> tuple[str | None, str]:
    """(task, metric) of `task/metric`; (None, name) for a cost such as `latency_ms`."""
    if "/" in name:
        task, metric = name.split("/", 1)
        return task, metric
    return None, name


def check_metric_name(name: str) -> str:
    """`name` (an alias resolved: `t/f1` is `t/f1_macro`) if it is `task/metric` of a known
    metric or a cost name; a ValueError naming what is expected (or the closest metric)."""
    task, metric = split_metric(name)
    if task is None and metric not in COST_METRICS:
        raise ValueError(
            f"{name!r} is not a metric name: expected TASK/METRIC (e.g. support_mc/acc) "
            f"or one of {', '.join(COST_METRICS)}"
        )
    if task is not None and (not task or not metric or "/" in metric):
        raise ValueError(f"{name!r} is not a metric name: expected TASK/METRIC")
    try:
        return check_metric(name)
    except ConfigError as err:
        raise ValueError(f"{name!r}: {err}") from err
