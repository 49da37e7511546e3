"""Trainers that `whetstone tune` can search: a registry from a kind to its trial runner.

A trial runner trains one model for one trial of a study::

    runner(config, params, output_dir, report) -> TrialOutcome

- ``config``: the trainer's pydantic config, parsed from the tune file's ``trainer`` section
  (the same model its own command reads, e.g. ``FinetuneConfig``);
- ``params``: the trial's sampled values by dotted path (``{"training.learning_rate": 3e-4}``);
  ``apply_params(config, params)`` returns the config with them set and re-validated;
- ``output_dir``: a folder of this trial's own; the runner saves the trained model in it;
- ``report``: a `TrialReport`. ``report.monitor`` names the validation tasks and the metric the
  runner should evaluate at its intermediate steps (None: no intermediate evaluation wanted);
  ``report(value, step)`` hands over one intermediate value and returns True when the trial
  should stop (the pruner cut it): the runner then stops training, frees what it holds and
  returns a `TrialOutcome` with ``pruned=True``.

The runner returns where the trained model is (a folder `load_model` reads) and what it spent;
`tune` then evaluates that model on the validation tasks itself, the same way for every kind.

Kinds live in the registry `TRAINERS` (entry-point group ``whetstone.trainers``, each naming
a `TrainerSpec`); `register_trainer` adds one from code. ``finetune``
(`whetstone.optimize.finetuning`) and ``distill`` (`whetstone.optimize.distill`) are imported
on first use, so a worker process (or a Ray worker) finds them without importing anything
first.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

from whetstone.errors import ConfigError
from whetstone.registry import Registry

M = TypeVar("M", bound=BaseModel)
Direction = Literal["maximize", "minimize"]


@dataclass
class Monitor:
    """What a runner evaluates at its intermediate steps: one metric of one validation task.

    ``tasks`` are prepared tasks (`whetstone.evaluate.engine.PreparedTask`, items loaded);
    `whetstone.optimize.evaluation.score_tasks` scores an in-memory model on them.
    """

    tasks: list[Any]
    task: str
    metric: str
    direction: Direction
    seed: int = 0

    @property
    def key(self) -> str:
        """``task/metric``, the name the value is logged under."""
        return f"{self.task}/{self.metric}"


class TrialReport:
    """Receives a trial's intermediate values; says when the trial should stop.

    The base class records the values and never stops a trial (what a plain `finetune` run
    uses); `tune` passes a subclass that reports to the Optuna trial and asks its pruner.
    """

    def __init__(self, monitor: Monitor | None = None) -> None:
        self.monitor = monitor
        self.values: dict[int, float] = {}
        self.pruned = False

    def __call__(self, value: float, step: int) -> bool:
        """Record ``value`` at ``step`` (1, 2, ... evaluations); True: stop, the trial is pruned."""
        self.values[int(step)] = float(value)
        self.pruned = self.pruned or self.should_prune(value, int(step))
        return self.pruned

    def should_prune(self, value: float, step: int) -> bool:
        """Whether to stop after this value (never, here)."""
        return False


class TrialOutcome(BaseModel):
    """What one trial's training produced."""

    # folder of the trained model (a normal Hugging Face model that `load_model` reads)
    model_path: str
    # the runner's own final numbers, "task/metric" or any name -> value (informational)
    metrics: dict[str, float] = Field(default_factory=dict)
    # what the training spent: train_seconds, train_samples (examples seen), train_flos, steps
    compute: dict[str, float] = Field(default_factory=dict)
    # True when the runner stopped because `report` said so
    pruned: bool = False


class TrialRunner(Protocol):
    """Trains one trial's model (see the module docstring for the contract)."""

    def __call__(
        self, config: Any, params: dict[str, Any], output_dir: Path, report: TrialReport
    ) -> TrialOutcome:
        """Train with ``config`` updated by ``params``; save the model under ``output_dir``."""
        ...


Baseline = Callable[[Any], Any]
"""config -> the untrained starting point (a `LanguageModel` or a `load_model` spec), which the
best trial's model is compared against."""


@dataclass(frozen=True)
class TrainerSpec:
    """A registered trainer kind."""

    kind: str
    runner: TrialRunner
    config_type: type[BaseModel]
    baseline: Baseline | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _accept(spec: object) -> tuple[str, ...]:
    if not isinstance(spec, TrainerSpec):
        raise TypeError(f"a whetstone.trainers entry point must name a TrainerSpec, not {spec!r}")
    return ()


TRAINERS: Registry[TrainerSpec] = Registry("trainers", noun="trainer kind", aliases_of=_accept)
"""Every trainer kind `whetstone tune` can search over."""
TRAINERS.register("finetune", "whetstone.optimize.finetuning:TRAINER")
TRAINERS.register("distill", "whetstone.optimize.distill:TRAINER")

#: Environment variable naming modules that register more trainer kinds.
MODULES_ENV = "WHETSTONE_TRAINER_MODULES"


def register_trainer(
    kind: str,
    runner: TrialRunner,
    config_type: type[BaseModel],
    *,
    baseline: Baseline | None = None,
    description: str = "",
) -> TrainerSpec:
    """Make ``kind`` searchable by `whetstone tune` (``trainer: {kind: ..., config: ...}``).

    ``config_type`` parses the trainer section (a pydantic model with ``extra="forbid"``; a
    ``base_dir`` field, when it has one, gets the folder relative paths resolve against).
    ``baseline(config)`` gives the model the best trial is compared with (optional).
    A kind registered twice is refused.
    """
    spec = TrainerSpec(kind, runner, config_type, baseline, description)
    TRAINERS.register(kind, spec)
    return spec


def get_trainer(kind: str) -> TrainerSpec:
    """The trainer registered as ``kind`` (a built-in one is imported on first use).

    Kinds registered by code in other packages are found in worker processes (which import
    nothing of the parent's) when ``$WHETSTONE_TRAINER_MODULES`` names the modules that
    register them (comma-separated); they are imported when a kind is not known yet.
    """
    if kind not in TRAINERS:
        for module in filter(None, os.environ.get(MODULES_ENV, "").split(",")):
            try:
                importlib.import_module(module.strip())
            except ImportError as exc:
                raise ConfigError(f"${MODULES_ENV}: cannot import '{module}' ({exc})") from exc
    return TRAINERS.get(kind)


def trainer_kinds() -> list[str]:
    """Every kind that `get_trainer` can return."""
    return sorted(TRAINERS.names())


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"search space: parameter '{path}': '{'.'.join(parts[: i + 1])}' is not a section"
            )
        node = child
    node[parts[-1]] = value


def apply_params(config: M, params: dict[str, Any]) -> M:
    """``config`` with each dotted ``path: value`` of ``params`` set, validated again.

    ``{"lora.r": 16}`` sets ``config.lora.r`` (creating the ``lora`` section with its defaults
    when the config has none). An unknown path or a bad value is a ConfigError naming it.
    """
    if not params:
        return config
    data = config.model_dump()
    for path, value in params.items():
        _set_path(data, path, value)
    fields = type(config).model_fields
    extra = {"base_dir": dict(config)["base_dir"]} if "base_dir" in fields else {}
    try:
        return type(config).model_validate({**data, **extra})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"search space: parameter '{where}': {msg}") from exc
