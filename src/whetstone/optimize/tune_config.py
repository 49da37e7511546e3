"""The `whetstone tune` config file: the search space, sampler, pruner, objectives and trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from whetstone.metrics import canonical_name
from whetstone.optimize.finetune_config import default_direction
from whetstone.optimize.trials import Direction

PrunerType = Literal["none", "median", "percentile", "successive_halving", "hyperband", "wilcoxon"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    """A float in [low, high]; ``log`` samples on a log scale; ``step`` makes it discrete."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    # the values the grid sampler visits (default: low..high by step)
    grid: list[float] | None = None

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if self.low > self.high:
            raise ValueError("low must be at most high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log needs low > 0 and no step")
        return self


class IntParam(_Strict):
    """An integer in [low, high] (both included), by ``step``; ``log`` on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False
    grid: list[int] | None = None

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if self.low > self.high:
            raise ValueError("low must be at most high")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log needs low > 0 and step 1")
        return self


class CategoricalParam(_Strict):
    """One of ``choices`` (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)


SearchParam = FloatParam | IntParam | CategoricalParam


class SamplerSpec(_Strict):
    """How trials pick parameters (Optuna's samplers)."""

    type: Literal["grid", "random", "tpe", "gp", "nsga2"] = "tpe"
    seed: int = 0
    # TPE/GP: random trials before the model-based proposals start
    n_startup_trials: int = Field(default=10, ge=0)
    # TPE: model the parameters jointly
    multivariate: bool = True


class PrunerSpec(_Strict):
    """How unpromising trials are stopped early (Optuna's pruners).

    median/percentile/successive_halving/hyperband see one value per evaluation during training
    (step 1, 2, ... at fixed fractions of an epoch). wilcoxon sees the final model's per-item
    scores on the validation task, evaluated in chunks, and stops the evaluation as soon as the
    model is significantly worse than the best trial on the same items.
    """

    type: PrunerType = "none"
    # median/percentile: trials before pruning starts, evaluations before a trial can be cut
    n_startup_trials: int = Field(default=5, ge=0)
    n_warmup_steps: int = Field(default=0, ge=0)
    percentile: float = Field(default=25.0, gt=0, lt=100)
    # successive halving / hyperband, in evaluations
    min_resource: int = Field(default=1, ge=1)
    max_resource: int | None = Field(default=None, ge=1)
    reduction_factor: int = Field(default=3, ge=2)
    # wilcoxon: p-value below which a trial is cut, items before testing, items per chunk
    p_threshold: float = Field(default=0.1, gt=0, lt=1)
    n_startup_steps: int = Field(default=2, ge=0)
    chunk: int = Field(default=16, ge=1)


class ObjectiveSpec(_Strict):
    """One objective: a metric of a validation task, maximized or minimized."""

    task: str
    # an alias is resolved through the metric registry (f1 -> f1_macro)
    metric: Annotated[str, AfterValidator(canonical_name)]
    direction: Direction | None = None

    @property
    def resolved_direction(self) -> Direction:
        """The direction, or the metric's default."""
        return self.direction or default_direction(self.metric)

    @property
    def key(self) -> str:
        """``task/metric``."""
        return f"{self.task}/{self.metric}"


class ValidationSpec(_Strict):
    """Task files each trial's model is scored on (the objectives name tasks from them)."""

    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0


class CompareSpec(_Strict):
    """After the study, the best model and the base are evaluated here and paired.

    Default: the validation tasks; a held-out test task avoids the optimism of reusing the
    data the study selected on.
    """

    tasks: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    enabled: bool = True


class TrainerSection(_Strict):
    """Which trainer runs the trials, and its config (a file or the mapping itself)."""

    kind: str = "finetune"
    config: str | dict[str, Any]


class TuneConfig(_Strict):
    """A whole `whetstone tune` study."""

    study: str
    trainer: TrainerSection
    search_space: dict[str, SearchParam] = Field(min_length=1)
    objectives: list[ObjectiveSpec] = Field(min_length=1)
    validation: ValidationSpec
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    # trials the study should have (finished or pruned) in total, across workers and resumes
    n_trials: int = Field(default=20, ge=1)
    # seconds after which a worker starts no new trial
    timeout: float | None = Field(default=None, gt=0)
    # trial models kept on disk: the best K (the rest are deleted as trials finish)
    keep_best: int = Field(default=2, ge=1)
    compare: CompareSpec = CompareSpec()
    # trial models go to OUTPUT_DIR/trial-N
    output_dir: str = "study"
    # Optuna storage URL (default: the whetstone database itself)
    storage: str | None = None
    # result store (default $WHETSTONE_DB or ./whetstone.db)
    db: str | None = None
    # seconds between a running trial's heartbeats; a trial silent for `heartbeat_grace` is
    # failed and retried once (a killed worker's trial is not lost)
    heartbeat: int = Field(default=60, ge=1)
    heartbeat_grace: int = Field(default=180, ge=2)
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if len(self.objectives) > 1 and self.pruner.type != "none":
            raise ValueError("pruning needs a single objective (Optuna cannot prune several)")
        if self.sampler.type == "grid":
            for name, param in self.search_space.items():
                if isinstance(param, FloatParam) and param.grid is None and param.step is None:
                    raise ValueError(
                        f"search_space.{name}: the grid sampler needs `grid` values or a `step`"
                    )
        return self

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to its folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def directions(self) -> list[Direction]:
        """The direction of each objective."""
        return [o.resolved_direction for o in self.objectives]


def load_tune_config(path: str | Path) -> TuneConfig:
    """Read a tune file; the trainer section is checked too (file:line errors for both)."""
    from whetstone.optimize.config_files import node_at, read_yaml, validate_section

    raw, node = read_yaml(path)
    where = str(path)
    config = validate_section(raw, node, where, TuneConfig, Path(path).resolve().parent)
    section = config.trainer.config
    if isinstance(section, dict):
        from whetstone.optimize.trials import get_trainer

        spec = get_trainer(config.trainer.kind)
        validate_section(
            section, node_at(node, ("trainer", "config")), where, spec.config_type, config.base_dir
        )
    trainer_config(config)
    return config


def trainer_config(config: TuneConfig) -> BaseModel:
    """The trainer's own config, parsed by the model its kind registered."""
    from whetstone.errors import ConfigError
    from whetstone.optimize.config_files import load_config
    from whetstone.optimize.trials import get_trainer

    spec = get_trainer(config.trainer.kind)
    section = config.trainer.config
    if isinstance(section, str):
        return load_config(config.resolve(section), spec.config_type)
    data = dict(section)
    if "base_dir" in spec.config_type.model_fields:
        data["base_dir"] = config.base_dir
    try:
        return spec.config_type.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"trainer.config: {' '.join(first[:3])}") from exc
