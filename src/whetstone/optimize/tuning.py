"""`tune`: an Optuna study over a trainer's hyperparameters, kept in the whetstone database.

Each trial: the sampler proposes parameters, the registered trainer trains a model with them
(reporting intermediate validation values to the pruner), then the model is scored on the
validation tasks, which gives the objective values. `run_trial(config, trial)` is that whole
objective: a plain module-level function of a picklable config and an Optuna trial, so any
executor (worker processes here, Ray elsewhere) can run it against the shared storage URL.
"""

from __future__ import annotations

import functools
import gc
import multiprocessing
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from whetstone.errors import ConfigError, WhetstoneError
from whetstone.optimize.memory import release_memory
from whetstone.optimize.results import StudyResult, TrialRecord, task_metrics, write_json
from whetstone.optimize.search import build_pruner, build_sampler, grid_size, suggest
from whetstone.optimize.storage import database_url, open_storage, safe_url
from whetstone.optimize.study import (
    BASE_ATTR,
    counted_trials,
    create_or_load,
    keep_best_models,
    summarize,
    trial_dir,
)
from whetstone.optimize.trials import (
    Monitor,
    TrainerSpec,
    TrialReport,
    apply_params,
    get_trainer,
)
from whetstone.optimize.tune_config import (
    CategoricalParam,
    TuneConfig,
    load_tune_config,
    trainer_config,
)

#: Seconds between two looks at the storage while worker processes run.
POLL_S = 2.0


class StudyProgress(Protocol):
    """Receives a study's progress (the CLI prints a line per trial)."""

    def study_started(self, name: str, done: int, total: int) -> None:
        """The study has ``done`` of ``total`` trials; workers start."""

    def trial_finished(self, trial: TrialRecord) -> None:
        """A trial completed, was pruned or failed."""


@dataclass
class StudyContext:
    """What every trial of one study shares within a process (built once per process)."""

    spec: TrainerSpec
    base: Any
    validation: list[Any]
    monitor: Monitor


_CONTEXTS: dict[tuple[str, str], StudyContext] = {}


def study_context(config: TuneConfig) -> StudyContext:
    """The shared context of ``config``'s study, built once per process (one study at a time)."""
    key = (config.model_dump_json(), str(config.base_dir))
    if key not in _CONTEXTS:
        _CONTEXTS.clear()
        _CONTEXTS[key] = build_context(config)
    return _CONTEXTS[key]


def build_context(config: TuneConfig) -> StudyContext:
    """Parse the trainer config, load the validation tasks, check the objectives name them."""
    from whetstone.evaluate.engine import prepare_tasks

    spec = get_trainer(config.trainer.kind)
    base = trainer_config(config)
    validation = prepare_tasks(
        [config.resolve(t) for t in config.validation.tasks], config.validation.limit
    )
    names = {p.config.name for p in validation}
    for o in config.objectives:
        if o.task not in names:
            raise ConfigError(
                f"objectives: task '{o.task}' is not a validation task ({', '.join(sorted(names))})"
            )
    first = config.objectives[0]
    tasks = [p for p in validation if p.config.name == first.task]
    monitor = Monitor(
        tasks, first.task, first.metric, first.resolved_direction, config.validation.seed
    )
    return StudyContext(spec, base, validation, monitor)


def check_search_space(config: TuneConfig, base: Any) -> None:
    """Every parameter path exists in the trainer config and takes its range's values."""
    for name, p in config.search_space.items():
        values = p.choices if isinstance(p, CategoricalParam) else [p.low, p.high]
        for value in values:
            try:
                apply_params(base, {name: value})
            except ConfigError as exc:
                raise ConfigError(f"search_space.{name} = {value!r}: {exc}") from exc


# --------------------------------------------------------------------------- one trial


class OptunaReport(TrialReport):
    """Hands intermediate values to the Optuna trial and asks its pruner."""

    def __init__(self, trial: Any, monitor: Monitor, prune: bool) -> None:
        super().__init__(monitor)
        self.trial = trial
        self.prune = prune

    def should_prune(self, value: float, step: int) -> bool:
        """Report to the trial (single objective, step-wise pruner) and ask the pruner."""
        if not self.prune:
            return False
        self.trial.report(value, step)
        return bool(self.trial.should_prune())


def _objective_values(config: TuneConfig, ctx: StudyContext, model_path: str, trial: Any) -> Any:
    """Score the trained model on the validation tasks: the objective values."""
    from whetstone.models import load_model
    from whetstone.optimize.evaluation import metric_value, score_tasks

    lm = load_model(model_path)
    try:
        if config.pruner.type == "wilcoxon":
            return [wilcoxon_value(config, ctx, lm, trial)]
        needed = {o.task for o in config.objectives}
        scored = score_tasks(
            lm,
            [p for p in ctx.validation if p.config.name in needed],
            seed=config.validation.seed,
        )
        return [metric_value(scored, o.task, o.metric) for o in config.objectives]
    except KeyError as exc:
        raise ConfigError(f"objectives: {exc.args[0]}") from exc
    finally:
        lm.close()
        del lm
        release_memory()


def wilcoxon_value(config: TuneConfig, ctx: StudyContext, lm: Any, trial: Any) -> float:
    """Score the validation items in chunks (in a per-trial shuffled order), reporting each
    item's score at its item index; stop as soon as the Wilcoxon pruner finds the trial worse
    than the best one on the same items. The objective is the mean per-item score."""
    import optuna

    from whetstone.optimize.evaluation import score_items

    objective = config.objectives[0]
    task = ctx.monitor.tasks[0]
    order = np.random.default_rng([config.validation.seed, trial.number]).permutation(
        len(task.items)
    )
    scores: list[float] = []
    for lo in range(0, len(order), config.pruner.chunk):
        rows = [int(i) for i in order[lo : lo + config.pruner.chunk]]
        _, samples = score_items(lm, task, [task.items[i] for i in rows], config.validation.seed)
        for i, sample in zip(rows, samples, strict=True):
            if objective.metric not in sample.metrics:
                raise ConfigError(
                    f"pruner wilcoxon: task '{objective.task}' has no per-item "
                    f"'{objective.metric}' (per item: {', '.join(sample.metrics)})"
                )
            value = float(sample.metrics[objective.metric])
            trial.report(value, i)
            scores.append(value)
        if trial.should_prune():
            raise optuna.TrialPruned(f"worse than the best trial after {len(scores)} items")
    return float(np.mean(scores))


def run_trial(config: TuneConfig, trial: Any) -> float | list[float]:
    """The objective of a study: train with the trial's parameters, return the validation
    value(s). A plain function of (config, trial), picklable for any executor."""
    import optuna

    ctx = study_context(config)
    params = suggest(trial, config.search_space)
    out = trial_dir(config, trial.number)
    shutil.rmtree(out, ignore_errors=True)  # a retried trial starts clean
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    # intermediate values go to Optuna (its pruner, the dashboard's curves) unless the trial
    # reports per-item scores instead (wilcoxon) or has several objectives (not supported)
    stepwise = len(config.objectives) == 1 and config.pruner.type != "wilcoxon"
    report = OptunaReport(trial, ctx.monitor, stepwise)
    try:
        outcome = ctx.spec.runner(ctx.base, params, out, report)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        release_memory()
        raise
    trial.set_user_attr("compute", outcome.compute)
    if outcome.pruned:
        shutil.rmtree(out, ignore_errors=True)
        release_memory()
        raise optuna.TrialPruned(f"pruned after {len(report.values)} evaluations")
    trial.set_user_attr("model_path", outcome.model_path)
    try:
        values = _objective_values(config, ctx, outcome.model_path, trial)
    except optuna.TrialPruned:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return values[0] if len(values) == 1 else values


# --------------------------------------------------------------------------- workers


def storage_for(config: TuneConfig, db: str | None, *, heartbeat: bool = False) -> Any:
    """The study's Optuna storage (the whetstone database unless ``storage`` is set)."""
    url = config.storage or database_url(db or config.db)
    kwargs = {"heartbeat": config.heartbeat, "grace": config.heartbeat_grace} if heartbeat else {}
    return open_storage(url, in_store=config.storage is None, **kwargs)


def run_worker(
    config: TuneConfig,
    db: str | None,
    n_trials: int,
    worker: int = 0,
    callbacks: tuple[Callable[[Any, Any], None], ...] = (),
) -> None:
    """Run up to ``n_trials`` trials of the study in this process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(config, db, heartbeat=True)
    study = create_or_load(
        config,
        storage,
        build_sampler(config.sampler, config.search_space, worker),
        build_pruner(config.pruner),
    )
    # what exists now lives as long as the worker: keep it out of the per-trial collections
    gc.collect()
    gc.freeze()
    try:
        study.optimize(
            functools.partial(run_trial, config),
            n_trials=n_trials,
            timeout=config.timeout,
            # a trial that fails (NaN loss, out of memory) is recorded and the study goes on
            catch=(RuntimeError, FloatingPointError),
            callbacks=[keep_best_models(config), *callbacks],
            gc_after_trial=False,  # run_trial releases memory itself, once per trial
        )
    finally:
        gc.unfreeze()


def _worker_main(config: TuneConfig, db: str | None, n: int, worker: int, errors: Any) -> None:
    try:
        run_worker(config, db, n, worker)
    except BaseException as exc:
        errors.put(f"worker {worker}: {exc}")
        raise SystemExit(1) from exc


def shares(total: int, workers: int) -> list[int]:
    """``total`` trials split over ``workers`` as evenly as possible (no worker gets 0)."""
    workers = max(1, min(workers, total))
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def _run_processes(
    config: TuneConfig,
    db: str | None,
    counts: list[int],
    study: Any,
    progress: StudyProgress | None,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_worker_main, args=(config, db, n, i, errors), daemon=False)
        for i, n in enumerate(counts)
    ]
    for p in procs:
        p.start()
    seen: set[int] = set()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(POLL_S)
            _report_new(config, study, seen, progress)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    _report_new(config, study, seen, progress)
    failed = [p for p in procs if p.exitcode != 0]
    if failed:
        message = errors.get(timeout=1) if not errors.empty() else f"exit code {failed[0].exitcode}"
        raise WhetstoneError(f"study '{config.study}': {message}")


def _report_new(
    config: TuneConfig, study: Any, seen: set[int], progress: StudyProgress | None
) -> None:
    from optuna.trial import TrialState

    from whetstone.optimize.study import _record

    if progress is None:
        return
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    for t in study.get_trials(deepcopy=False, states=done):
        if t.number not in seen:
            seen.add(t.number)
            progress.trial_finished(_record(config, t))


# --------------------------------------------------------------------------- the study


def base_values(config: TuneConfig, ctx: StudyContext, study: Any) -> list[float]:
    """The objectives measured on the untrained baseline (once per study, stored with it);
    measuring them first also checks that the objective metrics exist."""
    from whetstone.optimize.evaluation import metric_value, score_tasks

    stored = study.user_attrs.get(BASE_ATTR)
    if stored is not None:
        return list(stored)
    if ctx.spec.baseline is None:
        return []
    lm = ctx.spec.baseline(ctx.base)
    if isinstance(lm, str):
        from whetstone.models import load_model

        lm = load_model(lm)
    try:
        scored = score_tasks(lm, ctx.validation, seed=config.validation.seed)
        try:
            values = [metric_value(scored, o.task, o.metric) for o in config.objectives]
        except KeyError as exc:
            raise ConfigError(f"objectives: {exc.args[0]}") from exc
        if config.pruner.type == "wilcoxon":
            _check_per_item(config, scored)
    finally:
        lm.close()
        del lm
        release_memory()
    study.set_user_attr(BASE_ATTR, values)
    return values


def _check_per_item(config: TuneConfig, scored: Any) -> None:
    objective = config.objectives[0]
    samples = scored[objective.task][1]
    if samples and objective.metric not in samples[0].metrics:
        raise ConfigError(
            f"pruner wilcoxon: task '{objective.task}' has no per-item '{objective.metric}' "
            f"(per item: {', '.join(samples[0].metrics)}); choose a per-item objective"
        )


def tune(
    config: TuneConfig | str | Path,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    db: str | None = None,
    progress: StudyProgress | None = None,
    reporter: Any = None,
) -> StudyResult:
    """Run (or resume) the study until it has ``n_trials`` finished or pruned trials.

    ``workers`` > 1 runs that many processes on the same storage, each with its share of the
    remaining trials. Afterwards the best model and the baseline are evaluated on the compare
    tasks (stored runs, paired item by item). The result is stored as artifact
    ``("study", STUDY)`` and written to ``OUTPUT/study.json``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = config if isinstance(config, TuneConfig) else load_tune_config(config)
    total = n_trials or cfg.n_trials
    if cfg.sampler.type == "grid":
        total = min(total, grid_size(cfg.search_space))
    ctx = study_context(cfg)
    check_search_space(cfg, ctx.base)
    storage = storage_for(cfg, db)
    study = create_or_load(
        cfg, storage, build_sampler(cfg.sampler, cfg.search_space), build_pruner(cfg.pruner)
    )
    base_values(cfg, ctx, study)
    done = counted_trials(study)
    if progress is not None:
        progress.study_started(cfg.study, done, total)
    remaining = total - done
    if remaining > 0 and workers <= 1:
        seen: set[int] = {t.number for t in study.get_trials(deepcopy=False)}
        run_worker(
            cfg, db, remaining, 0, callbacks=(lambda s, t: _report_new(cfg, s, seen, progress),)
        )
    elif remaining > 0:
        _run_processes(cfg, db, shares(remaining, workers), study, progress)
    url = cfg.storage or database_url(db or cfg.db)
    result = summarize(cfg, study, safe_url(url), total)
    if cfg.compare.enabled and result.best_model:
        result = _compare(cfg, ctx, result, db, reporter)
    from whetstone.store import Store

    Store(db or cfg.db).put_artifact(
        "study",
        cfg.study,
        result.model_dump(mode="json"),
        refs=[r for r in (result.base_run, result.best_run) if r],
    )
    write_json(cfg.resolve(cfg.output_dir) / "study.json", result)
    return result


def _compare(
    cfg: TuneConfig, ctx: StudyContext, result: StudyResult, db: str | None, reporter: Any
) -> StudyResult:
    """Evaluate the best model and the baseline on the compare tasks and pair them."""
    from whetstone.evaluate.compare import compare_samples
    from whetstone.evaluate.engine import evaluate
    from whetstone.store import Store

    store = Store(db or cfg.db)
    paths = cfg.compare.tasks or cfg.validation.tasks
    tasks = [cfg.resolve(t) for t in paths]
    options: dict[str, Any] = {"limit": cfg.compare.limit, "seed": cfg.compare.seed, "db": store}
    best = evaluate(str(result.best_model), tasks, reporter=reporter, **options)
    release_memory()
    if ctx.spec.baseline is None:
        return result.model_copy(
            update={"best_run": best.result.run_id, "best_metrics": task_metrics(best.result)}
        )
    baseline = ctx.spec.baseline(ctx.base)
    base = evaluate(baseline, tasks, reporter=reporter, **options)
    if not isinstance(baseline, str):
        baseline.close()
    release_memory()
    comparison = compare_samples(
        base.samples,
        best.samples,
        run_a=base.result.run_id,
        run_b=best.result.run_id,
        seed=cfg.compare.seed,
    )
    return result.model_copy(
        update={
            "compare_tasks": [str(t) for t in tasks],
            "base_run": base.result.run_id,
            "best_run": best.result.run_id,
            "base_metrics": task_metrics(base.result),
            "best_metrics": task_metrics(best.result),
            "comparison": comparison,
        }
    )
