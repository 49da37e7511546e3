"""Study trials on a Ray cluster, coordinated only through Optuna's storage.

Each trial is one Ray task with its own CPUs and GPUs: the task loads the study from the shared
storage URL (PostgreSQL for a cluster of machines), lets the sampler propose the parameters
there and runs the objective once (`study.optimize(..., n_trials=1)`). The driver keeps
`workers` tasks in flight until `n_trials` have finished, so the study gets exactly that many
trials. A task whose process dies is retried by Ray as a fresh trial; the trial it left
running is marked failed (user attribute `interrupted`) when the run ends, so it never passes
for a finished one. Trials in plain processes on one URL are `run_study_worker`.
"""

from __future__ import annotations

import functools
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.scale.ray_cluster import (
    cluster_resources,
    connect,
    disconnect,
    first_line,
    import_ray,
    runtime_env,
    worker_error,
)

POLL_S = 1.0
"""Seconds between two looks at the storage (progress lines) while trials run."""

WORKER_ATTR = "worker"
INTERRUPTED_ATTR = "interrupted"


class TrialResources(BaseModel):
    """What one trial gets on the cluster: CPUs and GPUs (fractions share a device)."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(default=1.0, gt=0)
    gpus: float = Field(default=0.0, ge=0)


def worker_id() -> str:
    """This process as `host:pid` (what a trial records as its worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _check_fits(resources: TrialResources) -> None:
    total = cluster_resources()
    for what, need, have in (
        ("CPUs", resources.cpus, total.get("CPU", 0.0)),
        ("GPUs", resources.gpus, total.get("GPU", 0.0)),
    ):
        if need > have + 1e-9:
            raise ConfigError(
                f"a trial needs {need:g} {what} but the Ray cluster has {have:g} in all"
            )


def run_trials_on_ray(
    run_one: Callable[[int], Any],
    n_trials: int,
    workers: int,
    resources: TrialResources | None = None,
    *,
    address: str | None = None,
    poll: Callable[[], None] | None = None,
    max_retries: int = 2,
) -> list[Any]:
    """Call `run_one(i)` for i in 0..n_trials-1 as Ray tasks, `workers` at a time.

    Returns what the calls returned, in order. `poll` is called about every `POLL_S` seconds
    while tasks run. An error raised by `run_one` stops the run (as a one-line error); a task
    whose process dies is retried up to `max_retries` times.
    """
    if n_trials < 0:
        raise ConfigError(f"--n-trials {n_trials}: expected 0 or more")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    resources = resources or TrialResources()
    ray = import_ray()
    connected = connect(address)
    try:
        _check_fits(resources)
        task = ray.remote(_call).options(
            num_cpus=resources.cpus,
            num_gpus=resources.gpus,
            max_retries=max_retries,
            retry_exceptions=False,
            **runtime_env(),
        )
        queue, results = deque(range(n_trials)), [None] * n_trials
        inflight: dict[Any, int] = {}
        try:
            while queue or inflight:
                while queue and len(inflight) < workers:
                    index = queue.popleft()
                    inflight[task.remote(run_one, index)] = index
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
                if poll is not None:
                    poll()
                for ref in ready:
                    index = inflight.pop(ref)
                    try:
                        results[index] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        raise worker_error(exc) from exc
                    except ray.exceptions.RayError as exc:  # the process died past its retries
                        raise WhetstoneError(
                            f"trial task {index} died {max_retries + 1} times: {first_line(exc)}"
                        ) from exc
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)
        return results
    finally:
        disconnect(connected)


def _call(run_one: Callable[[int], Any], index: int) -> Any:
    return run_one(index)


# --------------------------------------------------------------------------- plain Optuna


def _tagged(objective: Callable[[Any], Any], trial: Any) -> Any:
    trial.set_user_attr(WORKER_ATTR, worker_id())
    return objective(trial)


def _optimize_one(
    study_name: str,
    storage_url: str,
    objective: Callable[[Any], Any],
    sampler: Callable[[int], Any] | None,
    catch: tuple[type[Exception], ...],
    index: int,
) -> int:
    """One trial of the study in this process; returns its number."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name, storage=storage_url, sampler=sampler(index) if sampler else None
    )
    numbers: list[int] = []
    study.optimize(
        functools.partial(_tagged, objective),
        n_trials=1,
        catch=catch,
        callbacks=[lambda _study, trial: numbers.append(trial.number)],
    )
    return numbers[0]


def finish_interrupted(study: Any, first: int) -> list[int]:
    """Mark failed the trials from number `first` on that are still running (their worker is
    gone once every task has returned); returns their numbers."""
    from optuna.trial import TrialState

    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.number >= first
    ]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, INTERRUPTED_ATTR, True)
        study.tell(t.number, state=TrialState.FAIL)
    return [t.number for t in stale]


def optimize_on_ray(
    study_name: str,
    storage_url: str,
    objective: Callable[[Any], Any],
    n_trials: int,
    workers: int = 2,
    resources: TrialResources | dict[str, float] | None = None,
    *,
    address: str | None = None,
    sampler: Callable[[int], Any] | None = None,
    catch: Sequence[type[Exception]] = (),
    max_retries: int = 2,
) -> list[int]:
    """Run `n_trials` trials of an existing Optuna study on Ray, `workers` at a time.

    `objective` is a plain Optuna objective (picklable: a module-level function or a partial
    of one); `sampler(i)` builds the sampler of the i-th trial's process (seed it with `i` so
    parallel trials differ; default: Optuna's). Returns the numbers of the trials it ran.
    """
    import optuna

    res = TrialResources.model_validate(resources or {})
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    first = len(study.get_trials(deepcopy=False))
    run_one = functools.partial(
        _optimize_one, study_name, storage_url, objective, sampler, tuple(catch)
    )
    try:
        return run_trials_on_ray(
            run_one, n_trials, workers, res, address=address, max_retries=max_retries
        )
    finally:
        finish_interrupted(study, first)


def run_study_worker(
    study_name: str,
    storage_url: str,
    objective: Callable[[Any], Any],
    n_trials: int,
    worker: int = 0,
    sampler: Callable[[int], Any] | None = None,
    catch: Sequence[type[Exception]] = (),
) -> None:
    """One plain worker process's share (`n_trials`) of a study at a shared storage URL.

    Start one per process or machine, each with its share; the study then has the sum of the
    shares. `sampler(worker)` gives each worker its own seed.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name, storage=storage_url, sampler=sampler(worker) if sampler else None
    )
    study.optimize(functools.partial(_tagged, objective), n_trials=n_trials, catch=tuple(catch))


# --------------------------------------------------------------------------- whetstone tune


def tune_on_ray(
    config: Any,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    db: str | None = None,
    progress: Any = None,
    reporter: Any = None,
    address: str | None = None,
    resources: TrialResources | None = None,
) -> Any:
    """`whetstone.optimize.tune` with its trials as Ray tasks (`workers` at a time, each with
    `resources`); returns the same `StudyResult`, stored and written as `tune` does."""
    from whetstone.optimize.search import build_pruner, build_sampler, grid_size
    from whetstone.optimize.study import counted_trials, create_or_load
    from whetstone.optimize.tune_config import TuneConfig, load_tune_config
    from whetstone.optimize.tuning import (
        _report_new,
        base_values,
        check_search_space,
        storage_for,
        study_context,
        tune,
    )

    cfg = config if isinstance(config, TuneConfig) else load_tune_config(Path(config))
    total = n_trials or cfg.n_trials
    if cfg.sampler.type == "grid":
        total = min(total, grid_size(cfg.search_space))
    ctx = study_context(cfg)
    check_search_space(cfg, ctx.base)
    study = create_or_load(
        cfg,
        storage_for(cfg, db),
        build_sampler(cfg.sampler, cfg.search_space),
        build_pruner(cfg.pruner),
    )
    base_values(cfg, ctx, study)
    done = counted_trials(study)
    if progress is not None:
        progress.study_started(cfg.study, done, total)
    first = len(study.get_trials(deepcopy=False))
    seen = {t.number for t in study.get_trials(deepcopy=False)}
    # each trial is one worker process's run of one trial, seeded by its index
    run_one = functools.partial(_tune_one, cfg, db, first)
    if total > done:
        try:
            run_trials_on_ray(
                run_one,
                total - done,
                workers,
                resources,
                address=address,
                poll=lambda: _report_new(cfg, study, seen, progress),
            )
        finally:
            finish_interrupted(study, first)
    _report_new(cfg, study, seen, progress)
    finished = counted_trials(study)
    if finished == 0:
        raise WhetstoneError(f"study '{cfg.study}': no trial finished; {_first_failure(study)}")
    # every trial is in: `tune` now only summarizes, compares, stores and writes the result
    return tune(cfg, n_trials=min(total, finished), workers=1, db=db, reporter=reporter)


def _tune_one(cfg: Any, db: str | None, offset: int, index: int) -> None:
    from whetstone.optimize.tuning import run_worker

    run_worker(cfg, db, 1, offset + index)


def _first_failure(study: Any) -> str:
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        reason = t.system_attrs.get("fail_reason")
        if reason:
            return f"trial {t.number} failed: {first_line(Exception(reason))}"
    return "see the workers' logs"


def tune_runner(
    executor: str = "local",
    *,
    address: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
) -> Callable[..., Any]:
    """The function `whetstone tune` calls: `tune` (local worker processes) or `tune_on_ray`
    with the cluster settings, checked."""
    from whetstone.evaluate.executor import EXECUTORS

    if executor not in EXECUTORS:
        known = ", ".join(EXECUTORS.names())
        raise ConfigError(f"--executor {executor!r}: expected one of {known}")
    given = {
        "--address": address,
        "--cpus-per-trial": cpus_per_trial,
        "--gpus-per-trial": gpus_per_trial,
    }
    if executor == "local":
        for option, value in given.items():
            if value is not None:
                raise ConfigError(f"{option} applies to --executor ray only")
        from whetstone.optimize.tuning import tune

        return tune
    if cpus_per_trial is not None and cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial {cpus_per_trial}: expected more than 0")
    if gpus_per_trial is not None and gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial {gpus_per_trial}: expected 0 or more")
    resources = TrialResources(cpus=cpus_per_trial or 1.0, gpus=gpus_per_trial or 0.0)
    return functools.partial(tune_on_ray, address=address, resources=resources)
