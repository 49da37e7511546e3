"""Studies run by several workers: Ray tasks on a local cluster, and plain processes on PostgreSQL.

Every objective call appends its trial number and process id to a log file, so "no duplicate
and no lost trial" is checked against what actually ran, not only against what the storage
says; values are recomputed from each trial's parameters.
"""

from __future__ import annotations

import functools
import itertools
import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from tests.optimize.conftest import FAKE_TASK, fake_item_scores, write_jsonl
from tests.optimize.fake_trainer import MODULE as FAKE_TRAINER
from tests.optimize.fake_trainer import FakeTrainerConfig, seed_of
from tests.scale.study_objectives import calls, failing, plain_worker, quadratic, reference
from whetstone.cli.main import app
from whetstone.errors import ConfigError, ModelError
from whetstone.scale.ray_tune import (
    INTERRUPTED_ATTR,
    TrialResources,
    optimize_on_ray,
    tune_runner,
)
from whetstone.store import Store

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def new_study(url: str, name: str = "s") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=url, direction="minimize")


def overlapping(trials: list[Any]) -> bool:
    """Whether some two trials ran at the same time."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


def assert_each_trial_ran_once(study: optuna.Study, log: Path, n: int) -> None:
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(n))  # none lost, none extra
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(number for number, _ in calls(log)) == list(range(n))  # each called once
    for t in trials:
        assert t.value == reference(t.params["x"], t.params["k"])
    assert len({(t.params["x"], t.params["k"]) for t in trials}) == n  # the samplers differ


# ------------------------------------------------------------------------------ fast checks


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "dask"}, "--executor 'dask': expected one of local, ray"),
        ({"address": "auto"}, "--address applies to --executor ray only"),
        ({"gpus_per_trial": 1}, "--gpus-per-trial applies to --executor ray only"),
        ({"executor": "ray", "cpus_per_trial": 0}, "--cpus-per-trial 0: expected more than 0"),
        ({"executor": "ray", "gpus_per_trial": -1}, "--gpus-per-trial -1: expected 0 or more"),
    ],
)
def test_bad_tune_executor_options(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        tune_runner(**kwargs)
    assert str(err.value) == message


def test_ray_runner_carries_the_cluster_and_the_trial_resources() -> None:
    run = tune_runner("ray", address="10.0.0.2:6379", cpus_per_trial=4, gpus_per_trial=0.5)
    assert isinstance(run, functools.partial)
    assert run.keywords == {
        "address": "10.0.0.2:6379",
        "resources": TrialResources(cpus=4, gpus=0.5),
    }


def test_tune_cli_rejects_cluster_options_without_ray(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["tune", str(tmp_path / "tune.yaml"), "--cpus-per-trial", "2"], env=ENV
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --cpus-per-trial applies to --executor ray only"


# ------------------------------------------------------------------------------ Ray


@pytest.mark.slow
def test_two_ray_workers_run_exactly_the_requested_trials(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    url, log = f"sqlite:///{tmp_path / 'study.db'}?timeout=60", tmp_path / "calls.log"
    new_study(url)
    numbers = optimize_on_ray(
        "s",
        url,
        functools.partial(quadratic, log=log, delay=0.3),
        n_trials=8,
        workers=2,
        resources={"cpus": 1},
        sampler=optuna.samplers.RandomSampler,  # seeded by the trial's index
    )
    study = optuna.load_study(study_name="s", storage=url)
    assert sorted(numbers) == list(range(8))
    assert_each_trial_ran_once(study, log, 8)
    assert len({pid for _, pid in calls(log)}) >= 2
    assert len({t.user_attrs["worker"] for t in study.trials}) >= 2
    assert overlapping(study.trials)  # two at a time


@pytest.mark.slow
def test_a_killed_trial_worker_is_replaced_and_its_trial_marked_interrupted(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    url, log = f"sqlite:///{tmp_path / 'study.db'}?timeout=60", tmp_path / "calls.log"
    new_study(url)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["numbers"] = optimize_on_ray(
                "s",
                url,
                functools.partial(quadratic, log=log, delay=1.5),
                n_trials=4,
                workers=2,
                sampler=optuna.samplers.RandomSampler,
            )
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    while not calls(log):
        assert thread.is_alive(), outcome
        assert time.monotonic() < deadline, "no trial started after 120 s"
        time.sleep(0.01)
    victim_trial, victim = calls(log)[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")

    study = optuna.load_study(study_name="s", storage=url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    (interrupted,) = study.get_trials(states=(TrialState.FAIL,))
    assert len(complete) == 4  # the requested number finished
    assert interrupted.number == victim_trial and interrupted.user_attrs[INTERRUPTED_ATTR]
    assert sorted(outcome["numbers"]) == sorted(t.number for t in complete)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    for t in complete:
        assert t.value == reference(t.params["x"], t.params["k"])


@pytest.mark.slow
def test_an_objective_error_on_a_worker_is_one_line(
    ray_cluster: ModuleType, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    new_study(url)
    with pytest.raises(ModelError) as err:
        optimize_on_ray("s", url, failing, n_trials=1, workers=1)
    assert str(err.value) == "a Ray worker failed: ValueError: the objective cannot run here"


@pytest.fixture
def fake_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tune file for the fake trainer on a 30-item yes/no task (objective known exactly)."""
    monkeypatch.setenv("WHETSTONE_TRAINER_MODULES", FAKE_TRAINER)
    import random

    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "kappa", "omega", "sigma", "theta"]
    rows = [
        {"id": f"q{i}", "text": " ".join(rng.choices(words, k=3)), "label": rng.randint(0, 1)}
        for i in range(30)
    ]
    write_jsonl(tmp_path / "yesno.jsonl", rows)
    (tmp_path / "yesno.yaml").write_text(FAKE_TASK, encoding="utf-8")
    config = {
        "study": "ray-study",
        "trainer": {"kind": "fake", "config": {"steps": 3}},
        "search_space": {
            "x": {"type": "float", "low": -1.0, "high": 1.0},
            "y": {"type": "categorical", "choices": ["a", "b", "c"]},
            "n": {"type": "int", "low": 1, "high": 4},
        },
        "objectives": [{"task": "yesno", "metric": "accuracy"}],
        "validation": {"tasks": [str(tmp_path / "yesno.yaml")]},
        "sampler": {"type": "random", "seed": 0},
        "n_trials": 6,
        "output_dir": str(tmp_path / "study"),
        "db": f"sqlite:///{tmp_path}/db.sqlite",
        "compare": {"enabled": False},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_whetstone_tune_on_ray_has_exactly_the_requested_trials(
    ray_cluster: ModuleType, fake_study: Path, tmp_path: Path
) -> None:
    args = ["tune", str(fake_study), "--executor", "ray", "--workers", "2", "--n-trials", "4"]
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == 0, result.stderr
    assert "study ray-study: 0 of 4 trials done" in result.stdout
    assert sum(line.startswith("trial ") for line in result.stdout.splitlines()) == 4

    url = f"sqlite:///{tmp_path}/db.sqlite"
    storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True)
    study = optuna.load_study(study_name="ray-study", storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(4))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2
    assert len({(t.params["x"], t.params["y"], t.params["n"]) for t in trials}) == 4
    for t in trials:  # accuracy of fake:SEED(params), recomputed from its bigram table
        seed = seed_of(FakeTrainerConfig(steps=3, **t.params))
        expected = sum(fake_item_scores(seed, tmp_path)) / 30
        assert t.value == pytest.approx(expected)
    saved = json.loads((tmp_path / "study" / "study.json").read_text())
    assert saved["n_trials"] == 4 and len(saved["trials"]) == 4
    artifact = Store(url).get_artifact("study", "ray-study")
    assert artifact is not None and len(artifact.payload["trials"]) == 4

    again = CliRunner().invoke(app, args, env=ENV)  # a finished study runs nothing more
    assert again.exit_code == 0, again.stderr
    assert "4 of 4 trials done" in again.stdout and len(study.get_trials()) == 4


# ------------------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_two_plain_processes_on_one_postgres_url(tmp_path: Path) -> None:
    url = os.environ.get("WHETSTONE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("WHETSTONE_TEST_POSTGRES_URL is not set")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"pg-{os.getpid()}-{tmp_path.name}"
    optuna.create_study(study_name=name, storage=url, direction="minimize")
    log = tmp_path / "calls.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=plain_worker, args=(name, url, str(log), 5, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    study = optuna.load_study(study_name=name, storage=url)
    try:
        assert_each_trial_ran_once(study, log, 10)
        assert len({pid for _, pid in calls(log)}) == 2
        assert len({t.user_attrs["worker"] for t in study.trials}) == 2
        assert overlapping(study.trials)
    finally:
        optuna.delete_study(study_name=name, storage=url)
