"""The metric registry: every metric declared once with its direction, aggregation, interval
method and paired test (docs/statistics.md says how each is computed).

Outside packages add metrics through the entry-point group ``whetstone.metrics`` (an entry
point named as the metric, naming a MetricSpec object) or by calling ``register_metric``.
"""

from __future__ import annotations

import difflib
from typing import Literal

from whetstone.errors import ConfigError
from whetstone.metrics._builtin import BUILTIN
from whetstone.metrics._spec import MetricSpec, apply_transform
from whetstone.registry import Registry

__all__ = [
    "METRICS",
    "MetricSpec",
    "apply_transform",
    "canonical_name",
    "check_metric",
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


def _plugin_aliases(spec: object) -> tuple[str, ...]:
    """The aliases an entry point's MetricSpec declares; anything else is refused."""
    if not isinstance(spec, MetricSpec):
        raise TypeError(f"a whetstone.metrics entry point must name a MetricSpec, not {spec!r}")
    return spec.aliases


def _registry() -> Registry[MetricSpec]:
    """A metric registry holding the built-in declarations (plug-ins load on first use)."""
    registry: Registry[MetricSpec] = Registry("metrics", noun="metric", aliases_of=_plugin_aliases)
    for spec in BUILTIN:
        registry.register(spec.name, spec, aliases=spec.aliases)
    return registry


#: The registry of metrics (kind "metrics", entry-point group ``whetstone.metrics``).
METRICS: Registry[MetricSpec] = _registry()


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a metric (a plug-in's, for example) under its name and aliases."""
    METRICS.register(spec.name, spec, aliases=spec.aliases)
    return spec


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


def check_metric(name: str, kind: str | None = None) -> str:
    """The canonical form of ``name`` (``task/metric`` or bare); an unknown metric, or one a
    task of ``kind`` does not report, is refused (ConfigError) with the closest name."""
    spec = metric_spec(name)
    if kind is not None and kind not in spec.kinds:
        close = difflib.get_close_matches(_bare(name), metrics_for(kind), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"metric {name!r} is not reported by {kind} tasks{hint}; "
            f"they report: {', '.join(metrics_for(kind))}"
        )
    return canonical_name(name)


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
