"""Pipeline files: what is accepted, and one-line errors naming the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from whetstone.errors import ConfigError
from whetstone.pipeline import load_pipeline, run_pipeline
from whetstone.store import Store

GOOD = """\
name: quillnote
model: fake
tasks: [tasks/suite.yaml]
limit: 10
candidates:
  - name: other
    model: fake:1
select:
  objective: support_intents/accuracy
  constraints:
    - {metric: latency_ms, max: 50}
gate:
  metrics: [support_mc/acc]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_pipeline(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_good_file_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    config = load_pipeline(write(tmp_path, GOOD))
    assert config.resolve(config.tasks[0]) == tmp_path.resolve() / "tasks" / "suite.yaml"
    assert config.workdir_path == Path.cwd() / "runs" / "quillnote"
    assert config.select is not None and config.select.constraints[0].max == 50
    assert config.gate is not None and config.gate.alpha == 0.05


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    message = error(tmp_path, GOOD.replace("  metrics: [support_mc/acc]", "  metric: [x/acc]"))
    assert message.startswith(f"{tmp_path / 'p.yaml'}:13:")
    assert "unknown key 'gate.metric'" in message and "did you mean 'metrics'" in message


def test_nested_unknown_key_in_a_list(tmp_path: Path) -> None:
    message = error(tmp_path, GOOD.replace("model: fake:1", "model: fake:1\n    dtype: float32"))
    assert ":8:" in message and "candidates[0].dtype" in message
    assert "model_options" in message  # the keys that are allowed there


def test_bad_metric_name_and_missing_field(tmp_path: Path) -> None:
    message = error(tmp_path, GOOD.replace("support_intents/accuracy", "accuracy"))
    assert ":9:" in message and "select.objective" in message and "TASK/METRIC" in message
    message = error(tmp_path, GOOD.replace("tasks: [tasks/suite.yaml]\n", ""))
    assert "field 'tasks': required but missing" in message


def test_metric_names_are_resolved_and_typos_named(tmp_path: Path) -> None:
    config = load_pipeline(write(tmp_path, GOOD.replace("support_mc/acc]", "support_mc/f1]")))
    assert config.gate is not None and config.gate.metrics == ["support_mc/f1_macro"]
    message = error(tmp_path, GOOD.replace("support_intents/accuracy", "support_intents/acuracy"))
    assert "select.objective" in message and "did you mean 'accuracy'" in message


def test_reserved_and_duplicate_candidate_names(tmp_path: Path) -> None:
    assert "used twice" in error(tmp_path, GOOD.replace("name: other", "name: baseline"))


def test_constraint_needs_a_bound(tmp_path: Path) -> None:
    message = error(tmp_path, GOOD.replace("{metric: latency_ms, max: 50}", "{metric: latency_ms}"))
    assert "give min, max or max_drop" in message


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, "name: x\ntasks: [a\n")
    assert "invalid YAML" in message and ":3" in message


def test_unknown_task_in_the_rule_is_refused_before_any_work(tmp_path: Path) -> None:
    from tests.pipeline.helpers import write_pipeline

    path = write_pipeline(tmp_path, select={"objective": "nosuch/accuracy"})
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(ConfigError, match="names task 'nosuch'"):
        run_pipeline(load_pipeline(path), store=store)
    assert store.list_runs() == []


def test_unknown_metric_of_a_known_task_lists_the_task_metrics(tmp_path: Path) -> None:
    from tests.pipeline.helpers import write_pipeline

    path = write_pipeline(tmp_path, select={"objective": "support_mc/accuracy"})
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with pytest.raises(
        ConfigError, match=r"task 'support_mc' has no metric 'accuracy' \(it has: acc, "
    ):
        run_pipeline(load_pipeline(path), store=store)


def test_a_step_this_install_lacks_is_refused_up_front(tmp_path: Path) -> None:
    import dataclasses

    from tests.pipeline.helpers import write_pipeline
    from whetstone.steps import STEPS

    missing = dataclasses.replace(STEPS.get("audit"), run="whetstone.no_such_module:audit")
    path = write_pipeline(tmp_path, audit=[{"data": "train.jsonl"}])
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with (
        STEPS.override("audit", missing),
        pytest.raises(ConfigError, match="asks for the 'audit' step, but this install"),
    ):
        run_pipeline(load_pipeline(path), store=store)
    assert store.list_runs() == []


@pytest.mark.parametrize("name", ["quickstart.yaml", "quickstart_fast.yaml"])
def test_the_example_pipelines_are_valid(name: str) -> None:
    from whetstone.data import examples_dir
    from whetstone.evaluate.engine import prepare_tasks
    from whetstone.pipeline import steps
    from whetstone.pipeline.runner import check_references

    config = load_pipeline(examples_dir() / name)
    steps.preflight(config)  # every step's own config model accepts its entry
    tasks = prepare_tasks([config.resolve(t) for t in config.tasks], config.limit)
    check_references(config, [t.config.name for t in tasks])
    assert [o.method for o in config.optimize][:4] == ["finetune", "tune", "distill", "quantize"]
    for audit in config.audit:
        assert config.resolve(audit.data).is_file()
