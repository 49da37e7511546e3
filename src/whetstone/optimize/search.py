"""The search space, samplers and pruners of a study, built from the tune config (Optuna's own)."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

from whetstone.errors import ConfigError, missing_extra
from whetstone.optimize.tune_config import (
    CategoricalParam,
    FloatParam,
    IntParam,
    PrunerSpec,
    SamplerSpec,
    SearchParam,
)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise missing_extra("optuna", "optimize") from exc
    return optuna


def suggest(trial: Any, space: dict[str, SearchParam]) -> dict[str, Any]:
    """The trial's value of every parameter, by dotted path."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            params[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, p.choices)
    return params


def grid_values(name: str, p: SearchParam) -> list[Any]:
    """The values the grid sampler visits for one parameter."""
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    if p.grid is not None:
        values: list[Any] = list(p.grid)
    elif isinstance(p, IntParam):
        values = list(range(p.low, p.high + 1, p.step))
    else:
        assert p.step is not None  # checked by TuneConfig
        n = round((p.high - p.low) / p.step) + 1
        values = [round(p.low + i * p.step, 12) for i in range(n)]
    outside = [v for v in values if not p.low <= v <= p.high]
    if outside or not values:
        raise ConfigError(
            f"search_space.{name}: grid values must lie in [{p.low}, {p.high}], got {outside}"
        )
    return values


def grid(space: dict[str, SearchParam]) -> dict[str, list[Any]]:
    """The whole grid: every parameter's values."""
    return {name: grid_values(name, p) for name, p in space.items()}


def grid_size(space: dict[str, SearchParam]) -> int:
    """Number of points of the grid."""
    n = 1
    for values in grid(space).values():
        n *= len(values)
    return n


def grid_points(space: dict[str, SearchParam]) -> list[dict[str, Any]]:
    """Every point of the grid, as parameter dicts."""
    g = grid(space)
    return [dict(zip(g, combo, strict=True)) for combo in itertools.product(*g.values())]


def build_sampler(spec: SamplerSpec, space: dict[str, SearchParam], worker: int = 0) -> Any:
    """The Optuna sampler; each worker process gets its own seed (seed + worker index), so
    parallel workers do not propose the same parameters."""
    samplers = _optuna().samplers
    seed = spec.seed + worker
    if spec.type == "grid":
        return samplers.GridSampler(grid(space), seed=seed)
    if spec.type == "random":
        return samplers.RandomSampler(seed=seed)
    if spec.type == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=spec.n_startup_trials)
    if spec.type == "nsga2":
        return samplers.NSGAIISampler(seed=seed)
    return samplers.TPESampler(
        seed=seed,
        n_startup_trials=spec.n_startup_trials,
        multivariate=spec.multivariate,
        constant_liar=True,  # parallel workers: running trials count as (pessimistic) results
    )


def build_pruner(spec: PrunerSpec) -> Any:
    """The Optuna pruner."""
    pruners = _optuna().pruners
    if spec.type == "median":
        return pruners.MedianPruner(
            n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
        )
    if spec.type == "percentile":
        return pruners.PercentilePruner(
            spec.percentile,
            n_startup_trials=spec.n_startup_trials,
            n_warmup_steps=spec.n_warmup_steps,
        )
    if spec.type == "successive_halving":
        return pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    if spec.type == "hyperband":
        return pruners.HyperbandPruner(
            min_resource=spec.min_resource,
            max_resource=spec.max_resource or "auto",
            reduction_factor=spec.reduction_factor,
        )
    if spec.type == "wilcoxon":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _optuna().exceptions.ExperimentalWarning)
            return pruners.WilcoxonPruner(
                p_threshold=spec.p_threshold, n_startup_steps=spec.n_startup_steps
            )
    return pruners.NopPruner()
