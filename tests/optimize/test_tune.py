"""`tune` checked against Optuna itself and against an independent objective.

The fake trainer's trial model is `fake:SEED` (seed from the parameters), so each objective value
is recomputed from the fake model's bigram table (`fake_item_scores`); samplers, pruners and
importances are replayed or recomputed with plain Optuna on the same values.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState

from tests.optimize.conftest import fake_item_scores
from tests.optimize.fake_trainer import FakeTrainerConfig, curve, seed_of
from whetstone.errors import ConfigError
from whetstone.optimize import StudyResult, render_html_section, tune
from whetstone.store import Store

SPACE = {
    "x": {"type": "float", "low": -1.0, "high": 1.0},
    "y": {"type": "categorical", "choices": ["a", "b", "c"]},
    "n": {"type": "int", "low": 1, "high": 4},
}


def write_config(tmp_path: Path, yesno_dir: Path, **fields: Any) -> Path:
    """A tune file for the fake trainer; ``fields`` override the defaults."""
    config: dict[str, Any] = {
        "study": "s",
        "trainer": {"kind": "fake", "config": {"steps": 3}},
        "search_space": SPACE,
        "objectives": [{"task": "yesno", "metric": "accuracy"}],
        "validation": {"tasks": [str(yesno_dir / "yesno.yaml")]},
        "sampler": {"type": "random", "seed": 0},
        "n_trials": 4,
        "output_dir": str(tmp_path / "study"),
        "db": f"sqlite:///{tmp_path}/db.sqlite",
        "compare": {"enabled": False},
    }
    config.update(fields)
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def objective_of(params: dict[str, Any], yesno_dir: Path) -> float:
    """The fake trial's accuracy, recomputed from the bigram table."""
    cfg = FakeTrainerConfig(steps=3, **params)
    return float(np.mean(fake_item_scores(seed_of(cfg), yesno_dir)))


def load(tmp_path: Path, name: str = "s") -> optuna.Study:
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path}/db.sqlite", skip_compatibility_check=True
    )
    return optuna.load_study(study_name=name, storage=storage)


def suggest_reference(trial: optuna.Trial, space: dict[str, Any]) -> dict[str, Any]:
    """The same suggest calls, written out with Optuna's API."""
    return {
        "x": trial.suggest_float("x", space["x"]["low"], space["x"]["high"]),
        "y": trial.suggest_categorical("y", space["y"]["choices"]),
        "n": trial.suggest_int("n", space["n"]["low"], space["n"]["high"]),
    }


def test_grid_sampler_visits_the_whole_grid(tmp_path, yesno_dir, fake_trainer):
    space = {
        "x": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
        "y": {"type": "categorical", "choices": ["a", "b"]},
        "n": {"type": "int", "low": 1, "high": 2},
    }
    path = write_config(
        tmp_path, yesno_dir, search_space=space, sampler={"type": "grid"}, n_trials=50
    )
    result = tune(path)
    grid = set(itertools.product([0.1, 0.2, 0.3], ["a", "b"], [1, 2]))
    visited = [(round(t.params["x"], 9), t.params["y"], t.params["n"]) for t in result.trials]
    assert len(visited) == 12 and set(visited) == grid
    for t in result.trials:
        assert t.values == [pytest.approx(objective_of(t.params, yesno_dir))]


@pytest.mark.parametrize(
    ("sampler", "reference"),
    [
        ({"type": "random", "seed": 3}, lambda: optuna.samplers.RandomSampler(seed=3)),
        (
            {"type": "tpe", "seed": 1, "n_startup_trials": 2},
            lambda: optuna.samplers.TPESampler(
                seed=1, n_startup_trials=2, multivariate=True, constant_liar=True
            ),
        ),
        (
            {"type": "gp", "seed": 2, "n_startup_trials": 2},
            lambda: optuna.samplers.GPSampler(seed=2, n_startup_trials=2),
        ),
    ],
)
def test_samplers_propose_what_optuna_proposes(
    tmp_path, yesno_dir, fake_trainer, sampler, reference
):
    result = tune(write_config(tmp_path, yesno_dir, sampler=sampler, n_trials=5))
    study = optuna.create_study(direction="maximize", sampler=reference())
    study.optimize(lambda t: objective_of(suggest_reference(t, SPACE), yesno_dir), n_trials=5)
    ours = [(t.params["x"], t.params["y"], t.params["n"]) for t in result.trials]
    theirs = [(t.params["x"], t.params["y"], t.params["n"]) for t in study.trials]
    assert ours == theirs
    assert [t.values for t in result.trials] == [[pytest.approx(t.value)] for t in study.trials]


def test_importances_best_trial_and_kept_folders(tmp_path, yesno_dir, fake_trainer):
    result = tune(write_config(tmp_path, yesno_dir, n_trials=8, keep_best=2))
    study = load(tmp_path)
    expected = optuna.importance.get_param_importances(
        study, evaluator=FanovaImportanceEvaluator(seed=0)
    )
    assert result.importances["yesno/accuracy"] == pytest.approx(dict(expected))
    assert result.best_values == [pytest.approx(study.best_value)]
    # ties on the value go to the earlier trial, as Optuna's best_trial does
    assert result.best_trials == [study.best_trial.number]
    stored = Store(f"sqlite:///{tmp_path}/db.sqlite").get_artifact("study", "s")
    assert stored is not None
    assert StudyResult.model_validate(stored.payload).trials == result.trials
    assert (tmp_path / "study" / "study.json").is_file()
    # only the best 2 trials keep their folders
    ranked = sorted(result.trials, key=lambda t: (-(t.values or [0])[0], t.number))
    kept = {p.name for p in (tmp_path / "study").iterdir() if p.name.startswith("trial-")}
    assert kept == {f"trial-{t.number}" for t in ranked[:2]}


def test_a_study_resumes_where_it_stopped(tmp_path, yesno_dir, fake_trainer):
    path = write_config(tmp_path, yesno_dir, n_trials=3)
    first = tune(path)
    second = tune(path, n_trials=5)
    assert [t.number for t in second.trials] == [0, 1, 2, 3, 4]

    def key(t: Any) -> tuple[Any, ...]:
        return t.number, t.state, t.params, t.values

    assert [key(t) for t in second.trials[:3]] == [key(t) for t in first.trials]
    again = tune(path, n_trials=5)  # nothing left to do
    assert len(again.trials) == 5
    changed = write_config(tmp_path, yesno_dir, n_trials=6, search_space={"x": SPACE["x"]})
    with pytest.raises(ConfigError, match="different search_space"):
        tune(changed)


def _replay(study: optuna.Study, space: dict[str, Any], yesno_dir: Path, steps: int = 3) -> None:
    def objective(trial: optuna.Trial) -> float:
        params = suggest_reference(trial, space)
        cfg = FakeTrainerConfig(steps=steps, **params)
        for step in range(1, steps + 1):
            trial.report(curve(cfg, step), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return objective_of(params, yesno_dir)

    study.optimize(objective, n_trials=8)


@pytest.mark.parametrize(
    ("pruner", "reference"),
    [
        (
            {"type": "median", "n_startup_trials": 1},
            lambda: optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
        ),
        (
            {"type": "successive_halving", "reduction_factor": 2},
            lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2),
        ),
        (
            {"type": "hyperband", "max_resource": 3, "reduction_factor": 2},
            lambda: optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=3, reduction_factor=2
            ),
        ),
    ],
)
def test_pruning_decisions_replay_in_optuna(tmp_path, yesno_dir, fake_trainer, pruner, reference):
    result = tune(write_config(tmp_path, yesno_dir, pruner=pruner, n_trials=8))
    # Hyperband assigns trials to brackets by a hash of the study name: use the same name
    study = optuna.create_study(
        study_name="s",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=reference(),
    )
    _replay(study, SPACE, yesno_dir)
    assert [t.state for t in result.trials] == [t.state.name for t in study.trials]
    assert [t.intermediate for t in result.trials] == [
        pytest.approx(t.intermediate_values) for t in study.trials
    ]
    assert any(t.state == "PRUNED" for t in result.trials)
    pruned = [t for t in result.trials if t.state == "PRUNED"]
    # a pruned trial stopped training: it spent fewer steps than the 3 of a full run
    assert all(t.compute["train_samples"] < 3 for t in pruned)
    assert result.total_compute["train_samples"] == sum(
        t.compute["train_samples"] for t in result.trials
    )


def test_wilcoxon_prunes_on_per_item_scores_as_optuna_does(tmp_path, yesno_dir, fake_trainer):
    # a continuous per-item score (Brier): scipy's Wilcoxon test on 0/1 scores is slow
    pruner = {"type": "wilcoxon", "p_threshold": 0.2, "n_startup_steps": 4, "chunk": 6}
    objectives = [{"task": "yesno", "metric": "brier"}]
    path = write_config(tmp_path, yesno_dir, pruner=pruner, objectives=objectives, n_trials=6)
    result = tune(path)
    scores = {}
    for t in result.trials:
        seed = seed_of(FakeTrainerConfig(steps=3, **t.params))
        scores[t.number] = fake_item_scores(seed, yesno_dir, "brier")
        # every reported value is that item's score, at the item's index
        assert t.intermediate == pytest.approx({i: scores[t.number][i] for i in t.intermediate})

    def objective(trial: optuna.Trial) -> float:
        suggest_reference(trial, SPACE)
        order = np.random.default_rng([0, trial.number]).permutation(30)
        seen = []
        for lo in range(0, 30, 6):
            for i in order[lo : lo + 6]:
                trial.report(scores[trial.number][int(i)], int(i))
                seen.append(scores[trial.number][int(i)])
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(seen))

    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.WilcoxonPruner(p_threshold=0.2, n_startup_steps=4),
    )
    study.optimize(objective, n_trials=6)
    assert [t.state for t in result.trials] == [t.state.name for t in study.trials]
    assert "PRUNED" in {t.state for t in result.trials}
    assert [t.values for t in result.trials] == [
        None if t.value is None else [pytest.approx(t.value)] for t in study.trials
    ]


def test_several_objectives_give_the_pareto_front(tmp_path, yesno_dir, fake_trainer):
    objectives = [
        {"task": "yesno", "metric": "accuracy"},
        {"task": "yesno", "metric": "ece"},
    ]
    result = tune(
        write_config(
            tmp_path, yesno_dir, objectives=objectives, sampler={"type": "nsga2"}, n_trials=8
        )
    )
    study = load(tmp_path)
    assert result.directions == ["maximize", "minimize"]
    assert set(result.best_trials) == {t.number for t in study.best_trials}
    for i, key in enumerate(["yesno/accuracy", "yesno/ece"]):
        try:
            expected = optuna.importance.get_param_importances(
                study,
                evaluator=FanovaImportanceEvaluator(seed=0),
                target=lambda t, i=i: t.values[i],
            )
        except RuntimeError as exc:  # fANOVA cannot always fit a handful of trials
            assert key not in result.importances and str(exc) in result.importance_note
        else:
            assert result.importances[key] == pytest.approx(dict(expected))


def test_the_best_model_is_compared_with_the_base_item_by_item(tmp_path, yesno_dir, fake_trainer):
    result = tune(write_config(tmp_path, yesno_dir, n_trials=3, compare={"enabled": True}))
    accuracy = next(m for m in result.comparison.metrics if m.metric == "accuracy")
    best = result.trials[result.best_trials[0]]
    assert accuracy.b == pytest.approx(objective_of(best.params, yesno_dir))
    assert accuracy.a == pytest.approx(float(np.mean(fake_item_scores(0, yesno_dir))))
    assert accuracy.test == "mcnemar_exact" and accuracy.n == 30
    assert result.base_values == [pytest.approx(accuracy.a)]
    store = Store(f"sqlite:///{tmp_path}/db.sqlite")
    assert store.get_run(result.best_run).status == "finished"
    html = render_html_section(result)
    assert html.count("<svg") >= 2 and "<script" not in html
    assert "optimization history" in html and "intermediate values" in html


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sampler": {"type": "anneal"}}, r"tune.yaml:\d+: field 'sampler.type'"),
        ({"n_trails": 3}, r"tune.yaml:\d+: unknown key 'n_trails' \(did you mean 'n_trials'"),
        ({"search_space": {"z": SPACE["x"]}}, r"search_space.z = -1.0: .*'z'"),
        (
            {"objectives": [{"task": "nope", "metric": "accuracy"}]},
            r"task 'nope' is not a validation",
        ),
        ({"objectives": [{"task": "yesno", "metric": "acc"}]}, r"no metric 'acc'"),
        (
            {"sampler": {"type": "grid"}},
            r"search_space.x: the grid sampler needs `grid` values or a `step`",
        ),
        (
            {"pruner": {"type": "wilcoxon"}, "objectives": [{"task": "yesno", "metric": "f1"}]},
            r"no per-item 'f1_macro'",
        ),
        (
            {
                "pruner": {"type": "median"},
                "objectives": [{"task": "yesno", "metric": "accuracy"}] * 2,
            },
            r"pruning needs a single objective",
        ),
        ({"trainer": {"kind": "boosting", "config": {}}}, r"unknown trainer kind 'boosting'"),
        (
            {"trainer": {"kind": "fake", "config": {"stepz": 3}}},
            r"tune.yaml:\d+: unknown key 'stepz'",
        ),
    ],
)
def test_bad_study_configs_fail_in_one_line_before_any_trial(
    tmp_path, yesno_dir, fake_trainer, fields, message
):
    path = write_config(tmp_path, yesno_dir, **fields)
    with pytest.raises(ConfigError, match=message) as err:
        tune(path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "study").exists()


@pytest.mark.postgres
def test_two_worker_processes_share_one_study_on_postgres(
    tmp_path, yesno_dir, fake_trainer, postgres_url
):
    path = write_config(tmp_path, yesno_dir, n_trials=10, db=postgres_url)
    result = tune(path, workers=2)
    storage = optuna.storages.RDBStorage(postgres_url, skip_compatibility_check=True)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    # every trial number once, none lost, none left running, each run by one of two workers
    assert sorted(t.number for t in trials) == list(range(10))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert len({(t.params["x"], t.params["y"], t.params["n"]) for t in trials}) == 10
    for t in trials:
        assert t.value == pytest.approx(objective_of(t.params, yesno_dir))
    assert [t.number for t in result.trials] == list(range(10))
    # the study and whetstone's own records share the database
    assert Store(postgres_url).get_artifact("study", "s") is not None


@pytest.mark.slow  # a worker process, killed, and the heartbeat grace period
def test_a_trial_whose_worker_was_killed_is_retried(tmp_path, yesno_dir, fake_trainer):
    import signal
    import subprocess
    import sys
    import time

    slow = write_config(
        tmp_path,
        yesno_dir,
        n_trials=3,
        heartbeat=1,
        heartbeat_grace=3,
        trainer={"kind": "fake", "config": {"steps": 3, "sleep": 60}},
    )
    repo = Path(__file__).resolve().parents[2]
    worker = subprocess.Popen(
        [sys.executable, "-m", "whetstone.cli.main", "tune", str(slow)],
        cwd=repo,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 300
        running: list = []
        while time.monotonic() < deadline and not running:
            time.sleep(0.5)
            running = _running_trials(tmp_path / "db.sqlite")
        assert running, (tmp_path / "worker.log").read_text()
        worker.send_signal(signal.SIGKILL)  # the trial is left RUNNING, its heartbeat stops
    finally:
        worker.kill()
        worker.wait()
    params = dict(load(tmp_path).trials[running[0]].params)
    time.sleep(4)  # longer than the grace period
    fast = write_config(
        tmp_path,
        yesno_dir,
        n_trials=3,
        heartbeat=1,
        heartbeat_grace=3,
        trainer={"kind": "fake", "config": {"steps": 3}},
    )
    result = tune(fast)
    states = [t.state for t in result.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 3
    retried = result.trials[1]
    assert retried.params == params and retried.state == "COMPLETE"


def _running_trials(db: Path) -> list[int]:
    """Numbers of RUNNING trials that sent a heartbeat, read with sqlite3 (opening Optuna's
    storage on a database whetstone has not created yet would stamp Optuna's schema version
    first)."""
    import sqlite3

    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute(
                "SELECT t.number FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
                " WHERE t.state = 'RUNNING'"
            ).fetchall()
        except sqlite3.OperationalError:  # no trials table yet
            return []
    return [r[0] for r in rows]
