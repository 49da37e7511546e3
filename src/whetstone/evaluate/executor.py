"""Where an evaluation computes its model requests: in this process, or sharded over a cluster.

The engine asks its executor for the model (`load`), for the cache-backed wrapper the scorers
call (`cached_model`) and releases it at the end (`close`). Scorers, metrics, the store and
the output files are the same for every executor, so results do not depend on which one ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from whetstone.errors import ConfigError
from whetstone.evaluate.cache import CachedModel
from whetstone.models import LanguageModel, load_model
from whetstone.registry import Registry
from whetstone.store import Store


class Executor(ABC):
    """Runs an evaluation's model requests; a small base that the engine drives."""

    name: str

    @abstractmethod
    def load(self, model: LanguageModel | str, options: dict[str, Any]) -> LanguageModel:
        """The model the scorers see, from a spec for `load_model` or a loaded backend."""

    @abstractmethod
    def cached_model(self, model: LanguageModel, store: Store | None) -> CachedModel:
        """The cache-backed wrapper that answers the scorers' requests."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release workers and connections started by `load`."""

    def summary(self) -> str:
        """A line on where the work ran, for the end of a command's output ("" when local)."""
        return ""


class LocalExecutor(Executor):
    """Everything in this process: the model is loaded here and requests run in chunks."""

    name = "local"

    def load(self, model: LanguageModel | str, options: dict[str, Any]) -> LanguageModel:
        """The loaded backend, or `load_model(spec, **options)`."""
        return load_model(model, **options) if isinstance(model, str) else model

    def cached_model(self, model: LanguageModel, store: Store | None) -> CachedModel:
        """The response cache in front of the model, committed chunk by chunk."""
        return CachedModel(model, store)


ExecutorFactory = Callable[..., "Executor"]
"""An executor from its cluster settings (``address``, ``workers``, ``cpus_per_worker``,
``gpus_per_worker``, ``shard_size``; those it does not take are refused)."""

EXECUTORS: Registry[ExecutorFactory] = Registry("executors", noun="executor")
"""Every executor by name (entry-point group ``whetstone.executors``)."""


def _local(**settings: Any) -> Executor:
    for option, value in settings.items():
        if value is not None:
            raise ConfigError(f"--{option.replace('_', '-')} applies to --executor ray only")
    return LocalExecutor()


EXECUTORS.register("local", _local, help="this process, in chunks (the default)")
EXECUTORS.register(
    "ray",
    "whetstone.scale.ray_eval:RayExecutor",  # imports ray itself when it connects
    help="shards on the actors of a Ray cluster",
)


def make_executor(
    name: str = "local",
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
    shard_size: int | None = None,
) -> Executor:
    """The registered executor called `name` with its cluster settings, checked."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS.names())}")
    return EXECUTORS.get(name)(
        address=address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        shard_size=shard_size,
    )
