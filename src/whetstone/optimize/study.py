"""A study's records: creating/loading it, ranking trials, keeping the best K models, and the
`StudyResult` summary (history, importances from `optuna.importance`, total compute)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from whetstone.errors import ConfigError
from whetstone.optimize.results import StudyResult, TrialRecord
from whetstone.optimize.tune_config import TuneConfig

CONFIG_ATTR = "whetstone_config"
BASE_ATTR = "whetstone_base_values"


def study_identity(config: TuneConfig) -> dict[str, Any]:
    """What a resumed study must agree on: trainer kind, search space and objectives."""
    return {
        "trainer": config.trainer.kind,
        "search_space": {k: v.model_dump(mode="json") for k, v in config.search_space.items()},
        "objectives": [o.key for o in config.objectives],
        "directions": list(config.directions),
    }


def create_or_load(config: TuneConfig, storage: Any, sampler: Any, pruner: Any) -> Any:
    """The study named in the config: created on first use, else loaded (resumed).

    A stored study with another search space or other objectives is refused: its trials would
    not be comparable.
    """
    import optuna

    try:
        study = optuna.create_study(
            study_name=config.study,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=list(config.directions),
            load_if_exists=True,
        )
    except ValueError as exc:
        raise ConfigError(
            f"study '{config.study}' exists with other objectives ({exc}); use another study name"
        ) from exc
    wanted = study_identity(config)
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, wanted)
    elif json.dumps(stored, sort_keys=True) != json.dumps(wanted, sort_keys=True):
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise ConfigError(
            f"study '{config.study}' exists with a different {', '.join(changed)}; "
            "resume it with the same config or use another study name"
        )
    return study


def counted_trials(study: Any) -> int:
    """Trials that count toward ``n_trials``: finished or pruned."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def ranked(trials: list[Any], directions: list[str]) -> list[Any]:
    """Complete trials best first: by how many trials dominate each one (0 = Pareto front),
    then by the first objective; ties keep the earlier trial."""
    sign = [-1.0 if d == "maximize" else 1.0 for d in directions]

    def key(t: Any) -> list[float]:
        return [s * v for s, v in zip(sign, t.values, strict=True)]

    keys = {t.number: key(t) for t in trials}

    def dominated_by(t: Any) -> int:
        mine = keys[t.number]
        return sum(
            1
            for o in trials
            if all(a <= b for a, b in zip(keys[o.number], mine, strict=True))
            and keys[o.number] != mine
        )

    return sorted(trials, key=lambda t: (dominated_by(t), keys[t.number][0], t.number))


def trial_dir(config: TuneConfig, number: int) -> Path:
    """Where trial ``number`` trains and saves its model."""
    return config.resolve(config.output_dir) / f"trial-{number}"


def keep_best_models(config: TuneConfig) -> Any:
    """An Optuna callback: after each trial, delete the model folders of every complete trial
    but the best ``keep_best`` (across all workers of the study)."""
    from optuna.trial import TrialState

    def callback(study: Any, _trial: Any) -> None:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = {t.number for t in ranked(complete, list(config.directions))[: config.keep_best]}
        for t in complete:
            if t.number not in best:
                shutil.rmtree(trial_dir(config, t.number), ignore_errors=True)

    return callback


def _record(config: TuneConfig, t: Any) -> TrialRecord:
    path = t.user_attrs.get("model_path")
    duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.duration else None
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        params=dict(t.params),
        values=list(t.values) if t.values is not None else None,
        intermediate={int(k): float(v) for k, v in t.intermediate_values.items()},
        started_at=t.datetime_start,
        finished_at=t.datetime_complete,
        duration_s=duration,
        model_path=path,
        kept=bool(path and Path(path).is_dir()),
        compute=dict(t.user_attrs.get("compute") or {}),
        worker=t.user_attrs.get("worker"),
    )


def importances(config: TuneConfig, study: Any) -> tuple[dict[str, dict[str, float]], str | None]:
    """Parameter importances per objective: `optuna.importance.get_param_importances` with the
    fANOVA evaluator seeded from the sampler's seed (so the numbers are reproducible)."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, "importances need at least 2 complete trials"
    out: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for i, objective in enumerate(config.objectives):
        target = (lambda t, i=i: t.values[i]) if len(config.objectives) > 1 else None
        try:
            values = optuna.importance.get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=config.sampler.seed), target=target
            )
        except (RuntimeError, ValueError) as exc:
            notes.append(f"{objective.key}: not computed ({str(exc).splitlines()[0]})")
            continue
        out[objective.key] = {k: float(v) for k, v in values.items()}
    return out, "; ".join(notes) or None


def best_trials(config: TuneConfig, study: Any) -> list[Any]:
    """The best trial (one objective) or the Pareto front ranked by the first objective."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    order = ranked(complete, list(config.directions))
    if len(config.objectives) == 1:
        return order[:1]
    front = {t.number for t in study.best_trials}
    return [t for t in order if t.number in front]


def summarize(config: TuneConfig, study: Any, storage_url: str, n_trials: int) -> StudyResult:
    """The study as a `StudyResult` (comparison fields are filled by `tune`)."""
    trials = [_record(config, t) for t in study.get_trials(deepcopy=False)]
    best = best_trials(config, study)
    imp, note = importances(config, study)
    total: dict[str, float] = {}
    for t in trials:
        for k, v in t.compute.items():
            total[k] = total.get(k, 0.0) + float(v)
    first = best[0] if best else None
    base = study.user_attrs.get(BASE_ATTR)
    return StudyResult(
        study_name=config.study,
        storage=storage_url,
        trainer=config.trainer.kind,
        directions=list(config.directions),
        objectives=[o.key for o in config.objectives],
        sampler=config.sampler.type,
        pruner=config.pruner.type,
        search_space={k: v.model_dump(mode="json") for k, v in config.search_space.items()},
        n_trials=n_trials,
        trials=trials,
        best_trials=[t.number for t in best],
        best_params=dict(first.params) if first else {},
        best_values=list(first.values) if first else [],
        best_model=first.user_attrs.get("model_path") if first else None,
        importances=imp,
        importance_note=note,
        total_compute=total,
        base_values=list(base) if base is not None else None,
        created_at=datetime.now(UTC),
    )
