"""`whetstone rescore`: metrics recomputed from a stored run's outputs equal those of a fresh
evaluation that calls the model, new metrics and stop strings apply, and a prompt that changed
since the run is refused with nothing stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from whetstone.cli.main import app
from whetstone.data import examples_dir
from whetstone.errors import DataError
from whetstone.evaluate.engine import evaluate
from whetstone.evaluate.rescore import SOURCE_KEY, rescore
from whetstone.records import RunResult
from whetstone.store import Store

RUNNER = CliRunner()
EXAMPLES_DIR = examples_dir()
SUITE = EXAMPLES_DIR / "suite.yaml"


def _values(run: RunResult) -> dict[str, tuple[float, float | None, float | None]]:
    return {
        f"{task}/{name}": (m.value, m.ci_low, m.ci_high)
        for task, result in run.tasks.items()
        for name, m in result.metrics.items()
    }


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    """A copy of the example tasks that a test may edit."""
    folder = tmp_path / "tasks"
    shutil.copytree(EXAMPLES_DIR, folder)
    return folder


def _edit(path: Path, **changes: object) -> None:
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


def test_rescored_metrics_equal_the_model_run_on_every_task_kind(tmp_path):
    db = Store(f"sqlite:///{tmp_path}/w.db")
    ev = evaluate("fake:3", [SUITE], db=db, seed=5)
    kinds = {t.kind for t in ev.result.tasks.values()}
    assert kinds == {"perplexity", "multiple_choice", "classification", "generation"}
    again, notes = rescore(ev.result.run_id, [SUITE], db=db)
    assert notes == []
    assert again.result.run_id != ev.result.run_id
    assert again.result.seed == 5  # the run's seed: the same bootstrap intervals
    assert _values(again.result) == _values(ev.result)
    stored = db.get_run(again.result.run_id)
    assert stored is not None and stored.status == "finished"
    assert stored.config[SOURCE_KEY] == ev.result.run_id
    assert stored.model == ev.result.model
    assert len(db.get_samples(again.result.run_id)) == len(ev.samples)


def test_a_new_metric_equals_a_fresh_evaluation_that_asks_for_it(tmp_path, tasks):
    db = Store(f"sqlite:///{tmp_path}/w.db")
    qa = tasks / "support_qa.yaml"
    _edit(qa, metrics=["exact_match"])
    first = evaluate("fake:1", [qa], db=db)
    assert set(first.result.tasks["support_qa"].metrics) == {"exact_match"}
    _edit(qa, metrics=["exact_match", "chrf", "token_f1"])
    again, _ = rescore(first.result.run_id, [qa], db=db)
    fresh = evaluate("fake:1", [qa], db=db, use_cache=False)
    assert set(again.result.tasks["support_qa"].metrics) == {"exact_match", "chrf", "token_f1"}
    assert _values(again.result) == _values(fresh.result)
    assert fresh.result.tasks["support_qa"].metrics["chrf"].value > 0  # not a trivial equality


def test_a_stop_string_added_since_the_run_cuts_the_stored_outputs(tmp_path, tasks):
    db = Store(f"sqlite:///{tmp_path}/w.db")
    qa = tasks / "support_qa.yaml"
    first = evaluate("fake:2", [qa], db=db)
    _edit(qa, stop=["\n", "r"])
    again, _ = rescore(first.result.run_id, [qa], db=db)
    fresh = evaluate("fake:2", [qa], db=db, use_cache=False)
    assert [s.prediction for s in again.samples] == [s.prediction for s in fresh.samples]
    assert [s.prediction for s in again.samples] != [s.prediction for s in first.samples]
    assert _values(again.result) == _values(fresh.result)


def test_a_changed_prompt_template_is_refused_and_nothing_is_stored(tmp_path, tasks):
    db_url = f"sqlite:///{tmp_path}/w.db"
    mc = tasks / "support_mc.yaml"
    first = evaluate("fake:0", [mc], db=db_url)
    _edit(mc, prompt="Q: {question}\nA:")
    result = RUNNER.invoke(app, ["rescore", first.result.run_id, "-t", str(mc), "--db", db_url])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert "support_mc" in line and "item mc-001" in line and "evaluate again" in line
    assert [r.run_id for r in Store(db_url).list_runs()] == [first.result.run_id]


def test_items_and_tasks_the_run_lacks_are_errors_and_missing_tasks_are_named(tmp_path):
    db = Store(f"sqlite:///{tmp_path}/w.db")
    docs, qa = EXAMPLES_DIR / "support_docs.yaml", EXAMPLES_DIR / "support_qa.yaml"
    first = evaluate("fake:0", [docs, qa], db=db, limit=5)
    again, notes = rescore(first.result.run_id, [qa], db=db)
    assert notes == [
        f"task support_docs of run {first.result.run_id} was not rescored: no task file gave it"
    ]
    assert [s.id for s in again.samples] == [s.id for s in first.samples if s.task == "support_qa"]
    with pytest.raises(DataError, match=r"no outputs for task.*support_mc"):
        rescore(first.result.run_id, [EXAMPLES_DIR / "support_mc.yaml"], db=db)


def test_cli_prints_the_source_and_show_names_it(tmp_path):
    db_url = f"sqlite:///{tmp_path}/w.db"
    qa = EXAMPLES_DIR / "support_qa.yaml"
    first = evaluate("fake:0", [qa], db=db_url, limit=4)
    out = tmp_path / "out"
    result = RUNNER.invoke(
        app, ["rescore", first.result.run_id[:6], "-t", str(qa), "--db", db_url, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"4 items rescored from run {first.result.run_id}" in " ".join(result.output.split())
    assert (out / "results.json").exists() and (out / "samples.jsonl").exists()
    new = RunResult.model_validate_json((out / "results.json").read_text())
    shown = RUNNER.invoke(app, ["show", new.run_id, "--db", db_url])
    assert f"rescored from the outputs of run {first.result.run_id}" in shown.output


def test_a_chat_template_run_is_replayed_when_its_prompts_hold_the_rebuilt_ones(tmp_path):
    """Without the model there is no chat template to apply: a stored prompt must contain the
    prompt the task file builds, and the stored one is what the replay answers."""
    db = Store(f"sqlite:///{tmp_path}/w.db")
    qa = EXAMPLES_DIR / "support_qa.yaml"
    plain = evaluate("fake:0", [qa], db=db, limit=6)
    wrapped = [
        s.model_copy(update={"prompt": f"<start_of_turn>user\n{s.prompt}<end_of_turn>\nmodel\n"})
        for s in plain.samples
    ]
    row = db.get_run(plain.result.run_id)
    assert row is not None

    def store_as_chat_run(run_id: str, samples: list) -> None:
        db.create_run(
            run_id, row.model, row.config | {"chat_template": True}, row.task_hashes,
            row.versions, row.seed,
        )  # fmt: skip
        db.add_samples(run_id, samples)

    store_as_chat_run("chatrun00001", wrapped)
    again, _ = rescore("chatrun00001", [qa], db=db)
    assert [s.prompt for s in again.samples] == [s.prompt for s in wrapped]
    assert _values(again.result) == _values(plain.result)
    wrapped[0].prompt = "<start_of_turn>user\nsomething else<end_of_turn>\n"
    store_as_chat_run("chatrun00002", wrapped)
    with pytest.raises(DataError, match="item qa-001"):
        rescore("chatrun00002", [qa], db=db)
