"""Where an evaluation computes its model requests: in this process, or sharded over a cluster.

The engine asks its executor for the model (`load`), for the cache-backed wrapper the scorers
call (`cached_model`) and releases it at the end (`close`). Scorers, metrics, the store and
the output files are the same for every executor, so results do not depend on which one ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from whetstone.errors import ConfigError
from whetstone.evaluate.cache import CachedModel
from whetstone.models import LanguageModel, load_model
from whetstone.store import Store

EXECUTORS = ("local", "ray")


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


def make_executor(
    name: str = "local",
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
    shard_size: int | None = None,
) -> Executor:
    """The executor called `name` (local or ray) with its cluster settings, checked."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    if name == "local":
        given = {
            "--address": address,
            "--workers": workers,
            "--cpus-per-worker": cpus_per_worker,
            "--gpus-per-worker": gpus_per_worker,
            "--shard-size": shard_size,
        }
        for option, value in given.items():
            if value is not None:
                raise ConfigError(f"{option} applies to --executor ray only")
        return LocalExecutor()
    from whetstone.scale.ray_eval import RayExecutor  # imports ray itself when it connects

    return RayExecutor(
        address=address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        shard_size=shard_size,
    )
