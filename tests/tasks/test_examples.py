"""The example tasks shipped with the package and the task files for the real benchmarks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from whetstone.data import examples_dir
from whetstone.tasks import (
    gold_index,
    gold_label,
    load_fewshot,
    load_items,
    load_tasks,
    prompt_fields,
    task_hash,
)

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = examples_dir()


def test_examples_dir() -> None:
    assert EXAMPLES.is_dir()
    assert (EXAMPLES / "suite.yaml").is_file()


def test_suite_lists_the_four_examples() -> None:
    tasks = load_tasks(EXAMPLES / "suite.yaml")
    assert [(t.name, t.kind) for t in tasks] == [
        ("support_docs", "perplexity"),
        ("support_mc", "multiple_choice"),
        ("support_intents", "classification"),
        ("support_qa", "generation"),
    ]
    assert all(t.base_dir == EXAMPLES for t in tasks)


@pytest.mark.parametrize("name", ["support_docs", "support_mc", "support_intents", "support_qa"])
def test_example_task_loads(name: str) -> None:
    (task,) = load_tasks(EXAMPLES / f"{name}.yaml")
    items = load_items(task)
    ids = [item["_id"] for item in items]
    assert len(set(ids)) == len(ids)
    assert len(task_hash(task)) == 64
    fewshot = load_fewshot(task)
    if fewshot:
        # few-shot examples are not test items
        column = "text" if task.kind == "classification" else "question"
        assert not {f[column] for f in fewshot} & {i[column] for i in items}


def test_support_docs() -> None:
    (task,) = load_tasks(EXAMPLES / "support_docs.yaml")
    assert task.window.max_length == 512
    items = load_items(task)
    assert 35 <= len(items) <= 50
    assert all(400 <= len(item["text"]) <= 1500 for item in items)
    assert all(item["title"] for item in items)
    assert sum("Quillnote" in item["text"] for item in items) >= 10


def test_support_mc() -> None:
    (task,) = load_tasks(EXAMPLES / "support_mc.yaml")
    items = load_items(task)
    assert len(items) == 60
    golds = [gold_index(task, item) for item in items]
    assert all(len(item["choices"]) == 4 for item in items)
    assert all(len(set(item["choices"])) == 4 for item in items)
    # the gold answer is not always in the same place
    assert set(Counter(golds).values()) == {15}
    assert {"sync", "billing", "accounts", "export", "shortcuts"} <= {i["topic"] for i in items}


def test_support_intents() -> None:
    (task,) = load_tasks(EXAMPLES / "support_intents.yaml")
    assert task.labels is not None and task.fewshot is not None
    assert set(task.labels) == {
        "billing",
        "bug_report",
        "account_access",
        "feature_request",
        "how_to",
    }
    assert task.fewshot.k == 3
    items = load_items(task)
    assert len(items) == 120
    counts = Counter(gold_label(task, item) for item in items)
    assert set(counts) == set(task.labels) and min(counts.values()) >= 20
    train = load_fewshot(task)
    assert len(train) == 20
    assert set(Counter(gold_label(task, item) for item in train)) == set(task.labels)
    assert prompt_fields(task.prompt) == ["text"]


def test_support_qa() -> None:
    (task,) = load_tasks(EXAMPLES / "support_qa.yaml")
    assert task.max_new_tokens == 16 and task.stop == ["\n"]
    items = load_items(task)
    assert len(items) == 50
    assert all(0 < len(item["answer"].split()) <= 6 for item in items)


def test_example_files_are_valid_jsonl() -> None:
    for path in EXAMPLES.glob("*.jsonl"):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines and all(isinstance(json.loads(line), dict) for line in lines), path


# --------------------------------------------------------------------------- benchmarks

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"the public benchmark data is not here ({SHARED_DATA} is absent)",
)

BENCHMARK_ROWS = {
    "arc_easy": 2376,
    "csqa": 1221,
    "sst2": 6735,
    "agnews": 7600,
}


def test_benchmark_files_parse() -> None:
    names = {path.stem for path in BENCHMARKS.glob("*.yaml")}
    assert names == {"arc_easy", "csqa", "sst2", "agnews", "tinyshakespeare"}
    for path in BENCHMARKS.glob("*.yaml"):
        (task,) = load_tasks(path)
        assert task.name == path.stem
        assert task.data.path.startswith("../../shared/data/")


@needs_shared_data
@pytest.mark.parametrize("name", sorted(BENCHMARK_ROWS))
def test_benchmark_loads(name: str) -> None:
    (task,) = load_tasks(BENCHMARKS / f"{name}.yaml")
    assert task.resolve(task.data.path).resolve().parent == SHARED_DATA.resolve()
    items = load_items(task)
    assert len(items) == BENCHMARK_ROWS[name]
    assert len(load_items(task, limit=25)) == 25
    if task.kind == "multiple_choice":
        golds = [gold_index(task, item) for item in items]
        assert all(0 <= g < len(item["choices"]) for g, item in zip(golds, items, strict=True))
    else:
        assert task.labels is not None
        assert set(Counter(gold_label(task, item) for item in items)) == set(task.labels)


@needs_shared_data
def test_arc_easy_numeric_labels() -> None:
    (task,) = load_tasks(BENCHMARKS / "arc_easy.yaml")
    numeric = [item for item in load_items(task) if item["labels"][0] == "1"]
    assert numeric, "ARC-Easy has items labeled 1-4"
    item = numeric[0]
    assert gold_index(task, item) == item["labels"].index(item["answer"])
    assert task.prompt.format(**item).startswith("Question: ")


@needs_shared_data
def test_tinyshakespeare_documents() -> None:
    (task,) = load_tasks(BENCHMARKS / "tinyshakespeare.yaml")
    assert task.data.chunk_chars == 4000
    items = load_items(task)
    text = (SHARED_DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    assert "".join(item["text"] for item in items) == text
    assert all(2000 <= len(item["text"]) <= 6000 for item in items[:-1])
    assert [item["text"] for item in load_items(task)] == [item["text"] for item in items]
