"""The metric registry: every metric declared once with its direction, aggregation, interval
method and paired test (docs/statistics.md says how each is computed).

Outside packages add metrics through the entry-point group ``whetstone.metrics`` (an entry
point naming a MetricSpec, or a callable returning one) or by calling ``register_metric``.
"""

from __future__ import annotations

from typing import Literal

from whetstone.metrics._builtin import BUILTIN
from whetstone.metrics._spec import MetricSpec, apply_transform
from whetstone.registry import Registry

__all__ = [
    "METRICS",
    "MetricSpec",
    "apply_transform",
    "canonical_name",
    "default_metrics",
    "direction",
    "headline_metrics",
    "higher_is_better",
    "is_known",
    "metric_spec",
    "metrics_for",
    "ratio_metrics",
    "register_metric",
]

#: The registry of metrics (kind "metrics").
METRICS: Registry[MetricSpec] = Registry("metrics")


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a metric (a plug-in's, for example) under its name and aliases."""
    METRICS.register(spec.name, spec, aliases=spec.aliases)
    return spec


for _spec in BUILTIN:
    register_metric(_spec)


def _bare(name: str) -> str:
    """The metric part of ``task/metric``."""
    return name.split("/", 1)[1] if "/" in name else name


def metric_spec(name: str) -> MetricSpec:
    """The declaration of ``name`` (an alias or ``task/metric`` is accepted)."""
    return METRICS.get(_bare(name))


def is_known(name: str) -> bool:
    """Whether ``name`` (or its metric part) is a registered metric or alias."""
    return _bare(name) in METRICS


def canonical_name(name: str) -> str:
    """``name`` with its metric part resolved from an alias (``t/f1`` -> ``t/f1_macro``);
    unknown metrics are returned unchanged."""
    bare = _bare(name)
    if bare not in METRICS:
        return name
    resolved = METRICS.canonical(bare)
    return f"{name.split('/', 1)[0]}/{resolved}" if "/" in name else resolved


def higher_is_better(name: str) -> bool:
    """Whether a larger value of ``name`` is an improvement (unknown metrics: yes)."""
    return metric_spec(name).higher_is_better if is_known(name) else True


def direction(name: str) -> Literal["maximize", "minimize"]:
    """Optuna's direction for ``name``."""
    return "maximize" if higher_is_better(name) else "minimize"


def metrics_for(kind: str) -> list[str]:
    """Names of the metrics a task kind produces."""
    return [name for name, spec in METRICS.items() if kind in spec.kinds]


def default_metrics(kind: str) -> list[str]:
    """The metrics a task of ``kind`` reports when its file names none."""
    return [name for name, spec in METRICS.items() if kind in spec.default_for]


def headline_metrics(kind: str | None = None) -> list[str]:
    """Metrics shown first in summaries, for one kind or all."""
    return [
        name
        for name, spec in METRICS.items()
        if spec.headline and (kind is None or kind in spec.kinds)
    ]


def ratio_metrics() -> list[MetricSpec]:
    """The corpus ratio metrics (perplexities, bits per byte)."""
    return [spec for _, spec in METRICS.items() if spec.aggregation == "ratio"]
