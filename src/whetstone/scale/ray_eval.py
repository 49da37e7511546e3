"""Evaluation on a Ray cluster: one actor per worker holds the model, shards stream back.

The driver (the process that runs `whetstone evaluate`) keeps the tasks, the store and the
metrics; workers only compute model requests. Each worker is a Ray actor with its own CPUs or
GPUs that loads the model once. Ray restarts an actor whose process dies and re-runs the shards
it held; a worker that cannot come back has its shards sent to the others.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Sequence
from typing import Any

from whetstone.errors import ConfigError, ModelError
from whetstone.evaluate.cache import CachedModel
from whetstone.evaluate.executor import Executor
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
)
from whetstone.scale.ray_cluster import (
    cluster_resources,
    connect,
    disconnect,
    first_line,
    import_ray,
    runtime_env,
    worker_error,
)
from whetstone.scale.shards import ShardedCachedModel, collect
from whetstone.scale.worker import ModelWorker, WorkerInfo
from whetstone.store import Store

IN_FLIGHT = 2
"""Shards queued per worker: the next one waits on the worker while the current one runs."""


class RayDispatcher:
    """Hands shards to actors (least busy first) and yields them as they finish.

    A shard whose actor dies past its restarts goes to another actor, up to `max_attempts`
    actors in all (a shard that kills every worker it meets must not take the whole pool).
    """

    def __init__(self, actors: Sequence[Any], max_attempts: int = 3) -> None:
        self.actors = list(actors)
        self.max_attempts = max_attempts
        self.alive_ = set(range(len(self.actors)))
        self.shards_by_pid_: Counter[int] = Counter()

    def run(self, kind: str, shards: Sequence[Sequence[Any]]) -> Iterator[tuple[int, list[Any]]]:
        """Yield `(shard index, answers)` in the order the shards finish."""
        ray = import_ray()
        queue = deque(range(len(shards)))
        failures: Counter[int] = Counter()
        alive = self.alive_
        busy = Counter[int]()
        inflight: dict[Any, tuple[int, int]] = {}
        while queue or inflight:
            while queue and alive and min(busy[a] for a in alive) < IN_FLIGHT:
                actor = min(alive, key=lambda a: busy[a])
                index = queue.popleft()
                ref = self.actors[actor].run_shard.remote(kind, shards[index])
                inflight[ref], busy[actor] = (index, actor), busy[actor] + 1
            if not inflight:
                raise ModelError("every Ray worker died; see `ray status` and the workers' logs")
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            index, actor = inflight.pop(ref)
            busy[actor] -= 1
            try:
                pid, answers = ray.get(ref)
            except ray.exceptions.RayActorError as exc:  # died past its restarts: use the others
                alive.discard(actor)
                failures[index] += 1
                if failures[index] >= self.max_attempts:
                    raise ModelError(
                        f"a shard of {len(shards[index])} {kind} requests failed on "
                        f"{failures[index]} workers; the last error: {first_line(exc)}"
                    ) from exc
                queue.appendleft(index)
                continue
            except ray.exceptions.RayTaskError as exc:  # the model raised: the run stops
                raise worker_error(exc) from exc
            self.shards_by_pid_[pid] += 1
            yield index, answers


class RemoteModel(LanguageModel):
    """The driver's view of the model the workers hold: its identity, chat template, requests."""

    def __init__(
        self, info: WorkerInfo, dispatcher: RayDispatcher, shard_size: int | None = None
    ) -> None:
        self.identity = info.identity
        self.info = info
        self.dispatcher = dispatcher
        self.shard_size = shard_size

    @property
    def has_chat_template(self) -> bool:
        """Whether the workers' model has a chat template."""
        return self.info.has_chat_template

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The chat template applied by a worker (the driver does not load the model)."""
        ray = import_ray()
        return str(ray.get(self.dispatcher.actors[0].chat_prompt.remote(list(messages))))

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """`LanguageModel.loglikelihood`, sharded over the workers."""
        return collect(self.dispatcher, "loglikelihood", requests, progress, self.shard_size)

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """`LanguageModel.loglikelihood_rolling`, sharded over the workers."""
        return collect(self.dispatcher, "rolling", requests, progress, self.shard_size)

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """`LanguageModel.generate`, sharded over the workers."""
        return collect(self.dispatcher, "generation", requests, progress, self.shard_size)


class RayExecutor(Executor):
    """Shards of requests on Ray actors, each holding the model on its own CPUs or GPUs.

    `workers` defaults to one per GPU of the cluster (one per `cpus_per_worker` CPUs on a
    cluster without GPUs); `gpus_per_worker` defaults to 1 where there are GPUs and the
    device is not `cpu`. `shard_size` (requests per shard) defaults to a local run's chunk,
    which keeps every number bit-identical to the local executor (see `plan_shards`). An actor
    whose process dies is restarted up to `max_restarts` times.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float | None = None,
        gpus_per_worker: float | None = None,
        shard_size: int | None = None,
        max_restarts: int = 3,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: expected at least 1")
        if cpus_per_worker is not None and cpus_per_worker <= 0:
            raise ConfigError(f"--cpus-per-worker {cpus_per_worker}: expected more than 0")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise ConfigError(f"--gpus-per-worker {gpus_per_worker}: expected 0 or more")
        if shard_size is not None and shard_size < 1:
            raise ConfigError(f"--shard-size {shard_size}: expected at least 1 request")
        self.address = address
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.shard_size = shard_size
        self.max_restarts = max_restarts
        self.actors_: list[Any] = []
        self.infos_: list[WorkerInfo] = []
        self.dispatcher_: RayDispatcher | None = None
        self._connected = False

    def plan(self, device: str = "auto") -> tuple[int, float, float]:
        """Workers, CPUs and GPUs per worker on the connected cluster; checked against it."""
        total = cluster_resources()
        cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
        per_gpu = self.gpus_per_worker
        if per_gpu is None:
            per_gpu = 1.0 if gpus >= 1 and device != "cpu" else 0.0
        per_cpu = self.cpus_per_worker or 1.0
        workers = self.workers or max(1, int(gpus // per_gpu) if per_gpu else int(cpus // per_cpu))
        for what, need, have in (("CPUs", per_cpu, cpus), ("GPUs", per_gpu, gpus)):
            if workers * need > have + 1e-9:
                raise ConfigError(
                    f"--workers {workers} with {need:g} {what} each need {workers * need:g} "
                    f"{what}; the Ray cluster has {have:g}"
                )
        return workers, per_cpu, per_gpu

    def load(self, model: LanguageModel | str, options: dict[str, Any]) -> LanguageModel:
        """Start the workers, each loading `model`; the driver gets their shared identity."""
        if not isinstance(model, str):
            raise ConfigError(
                "--executor ray: the workers load the model themselves; "
                "pass a model spec (a name, folder or file), not a loaded model"
            )
        ray = import_ray()
        self._connected = connect(self.address)
        workers, per_cpu, per_gpu = self.plan(str(options.get("device", "auto")))
        key_env = str(options.get("api_key_env") or "") if model.startswith("openai:") else ""
        actor_class = ray.remote(ModelWorker).options(
            num_cpus=per_cpu,
            num_gpus=per_gpu,
            max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
            **runtime_env(*filter(None, [key_env])),
        )
        self.actors_ = [actor_class.remote(model, options, per_cpu) for _ in range(workers)]
        try:
            self.infos_ = ray.get([a.start.remote() for a in self.actors_])
        except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
            raise worker_error(exc) from exc
        identities = {info.identity.key for info in self.infos_}
        if len(identities) > 1:
            raise ModelError(
                f"model {model!r}: the Ray workers loaded different models "
                f"({', '.join(sorted(identities))}); every node needs the same files"
            )
        self.dispatcher_ = RayDispatcher(self.actors_)
        return RemoteModel(self.infos_[0], self.dispatcher_, self.shard_size)

    def cached_model(self, model: LanguageModel, store: Store | None) -> CachedModel:
        """The response cache in front of the workers; each shard is committed as it returns."""
        if not isinstance(model, RemoteModel):
            raise ConfigError("--executor ray: the model must come from RayExecutor.load")
        return ShardedCachedModel(model, store, model.dispatcher, self.shard_size)

    def summary(self) -> str:
        """How many shards ran on how many worker processes, and how many were restarted."""
        if self.dispatcher_ is None:
            return ""
        done = self.dispatcher_.shards_by_pid_
        restarted = len(set(done) - {info.pid for info in self.infos_})
        hosts = len({info.host for info in self.infos_})
        line = (
            f"ray: {_count(sum(done.values()), 'shard')} on {_count(len(self.infos_), 'worker')} "
            f"({_count(hosts, 'node')})"
        )
        if restarted:
            line += f", {_count(restarted, 'worker process', 'es')} restarted"
        return line

    def close(self) -> None:
        """Stop the workers, and disconnect when `load` connected."""
        if self.actors_:
            ray = import_ray()
            for actor in self.actors_:
                ray.kill(actor, no_restart=True)
            self.actors_ = []
        disconnect(self._connected)
        self._connected = False


def _count(n: int, noun: str, plural: str = "s") -> str:
    return f"{n} {noun}{plural if n != 1 else ''}"
