"""Task files, data files and their one-line errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from whetstone.errors import ConfigError, DataError
from whetstone.tasks import (
    TaskConfig,
    chunk_text,
    gold_index,
    gold_label,
    load_fewshot,
    load_items,
    load_tasks,
    prompt_fields,
    task_hash,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


MC_ROWS = [
    {"id": f"q{i}", "question": f"question {i}?", "choices": ["a", "b", "c"], "answer": i % 3}
    for i in range(10)
]

MC_YAML = """
name: quiz
kind: multiple_choice
data:
  path: quiz.jsonl
  id: id
prompt: "Question: {question}\\nAnswer:"
choices: choices
answer: answer
"""


def mc_task(
    tmp_path: Path, rows: list[dict[str, Any]] = MC_ROWS, yaml: str = MC_YAML
) -> TaskConfig:
    write_jsonl(tmp_path / "quiz.jsonl", rows)
    (task,) = load_tasks(write(tmp_path / "quiz.yaml", yaml))
    return task


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_tasks(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def data_error(task: TaskConfig, limit: int | None = None) -> str:
    with pytest.raises(DataError) as info:
        load_items(task, limit=limit)
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- task files


def test_single_task_file_sets_base_dir(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    assert task.name == "quiz"
    assert task.kind == "multiple_choice"
    assert task.base_dir == tmp_path
    assert task.resolve(task.data.path) == tmp_path / "quiz.jsonl"


def test_suite_with_paths_and_mappings(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "sub" / "quiz.jsonl", MC_ROWS)
    write(tmp_path / "sub" / "quiz.yaml", MC_YAML)
    write(tmp_path / "docs.txt", "one\n\ntwo\n")
    suite = write(
        tmp_path / "suite.yaml",
        """
        name: my suite
        tasks:
          - sub/quiz.yaml
          - name: docs
            kind: perplexity
            data: {path: docs.txt}
        """,
    )
    quiz, docs = load_tasks(suite)
    assert quiz.base_dir == tmp_path / "sub"
    assert docs.base_dir == tmp_path
    assert len(load_items(quiz)) == 10
    assert [item["text"] for item in load_items(docs)] == ["one", "two"]


def test_unknown_key_names_file_line_and_expected_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "arc.yaml",
        """
        name: arc
        kind: multiple_choice
        data:
          path: arc.jsonl
        promt: "Question: {question}"
        choices: choices
        answer: answer
        """,
    )
    message = config_error(path)
    assert message.startswith(f"{path}:5: unknown key 'promt'")
    assert "did you mean 'prompt'?" in message
    assert "expected one of: name, kind, data" in message
    assert "base_dir" not in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        """
        name: t
        kind: perplexity
        data:
          path: a.txt
          limt: 3
        """,
    )
    message = config_error(path)
    assert message.startswith(f"{path}:5: 'data': unknown key 'limt'")
    assert "limit" in message and "chunk_chars" in message


def test_base_dir_cannot_be_set_in_yaml(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml", "name: t\nkind: perplexity\ndata: {path: a.txt}\nbase_dir: /\n"
    )
    assert config_error(path).startswith(f"{path}:4: unknown key 'base_dir'")


def test_bad_kind_lists_the_kinds(tmp_path: Path) -> None:
    path = write(tmp_path / "arc.yaml", "name: arc\nkind: mc\ndata: {path: a.jsonl}\n")
    assert config_error(path) == (
        f"{path}:2: field 'kind': expected one of perplexity, multiple_choice, classification, "
        "generation, got 'mc'"
    )


def test_more_errors_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "kind: mc\nmax_new_tokens: 0\n")
    message = config_error(path)
    assert "more error" in message


def test_wrong_type_names_field_and_expectation(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        """
        name: t
        kind: generation
        target: answer
        max_new_tokens: lots
        data: {path: a.jsonl}
        """,
    )
    message = config_error(path)
    assert message.startswith(f"{path}:4: field 'max_new_tokens': expected a valid integer")
    assert "got 'lots'" in message


def test_list_item_error_points_at_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        """
        name: t
        kind: generation
        target: answer
        stop:
          - "\\n"
          - 3
        data: {path: a.jsonl}
        """,
    )
    assert config_error(path).startswith(f"{path}:6: field 'stop[1]': expected a valid string")


def test_missing_field(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "kind: perplexity\ndata: {path: a.txt}\n")
    assert config_error(path) == f"{path}:1: field 'name': required but missing"


def test_kind_needs_its_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\n\nkind: multiple_choice\ndata: {path: a.jsonl}\n")
    message = config_error(path)
    assert message.startswith(f"{path}:3: a multiple_choice task needs the field(s)")
    assert "choices" in message and "answer" in message


def test_window_check(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        "name: t\nkind: perplexity\ndata: {path: a.txt}\nwindow: {max_length: 8, stride: 9}\n",
    )
    assert config_error(path) == f"{path}:4: field 'window': stride must be at most max_length"


def test_yaml_syntax_error_has_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\nkind: perplexity\ndata: {path: a.txt\nprompt: x\n")
    message = config_error(path)
    assert message.startswith(f"{path}:4: invalid YAML:")


def test_yaml_tab_indent_error(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\ndata:\n\tpath: a.txt\n")
    assert config_error(path).startswith(f"{path}:3: invalid YAML:")


def test_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\nkind: perplexity\ndata: {path: a.txt}\nname: u\n")
    assert config_error(path) == f"{path}:4: key 'name' appears twice (first on line 1)"


def test_missing_empty_and_non_mapping_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert config_error(missing) == f"{missing}: task file not found"
    empty = write(tmp_path / "empty.yaml", "# only a comment\n")
    assert config_error(empty).startswith(f"{empty}: the task file is empty")
    listing = write(tmp_path / "list.yaml", "- a\n- b\n")
    assert config_error(listing) == (
        f"{listing}:1: expected a mapping of task fields (or a suite with 'tasks:'), got a list"
    )
    scalar = write(tmp_path / "scalar.yaml", "just text\n")
    assert "got str 'just text'" in config_error(scalar)
    assert "is a folder" in config_error(tmp_path)


def test_bad_prompt_template(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.yaml",
        'name: t\nkind: generation\ntarget: a\ndata: {path: a.jsonl}\nprompt: "Q: {question"\n',
    )
    message = config_error(path)
    assert message.startswith(f"{path}:5: field 'prompt': expected a str.format template")
    positional = write(
        tmp_path / "p.yaml",
        'name: t\nkind: generation\ntarget: a\ndata: {path: a.jsonl}\nprompt: "{}"\n',
    )
    assert "positional field" in config_error(positional)


def test_unsupported_data_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "t.yaml", "name: t\nkind: perplexity\ndata:\n  path: a.xlsx\n")
    message = config_error(path)
    assert message.startswith(f"{path}:4: field 'data.path': expected a file ending in .jsonl")
    assert "got 'a.xlsx'" in message


def test_suite_errors(tmp_path: Path) -> None:
    missing = write(tmp_path / "s1.yaml", "tasks:\n  - other.yaml\n")
    message = config_error(missing)
    assert message.startswith(f"{missing}:2: task file 'other.yaml' not found")
    assert "relative to the suite file's folder" in message

    wrong = write(
        tmp_path / "s2.yaml",
        "tasks:\n  - {name: a, kind: perplexity, data: {path: a.txt}}\n  - 5\n",
    )
    assert config_error(wrong) == (
        f"{wrong}:3: field 'tasks[1]': expected a task mapping or a task file path, got int 5"
    )

    empty = write(tmp_path / "s3.yaml", "tasks: []\n")
    assert config_error(empty).startswith(f"{empty}:1: field 'tasks': expected a non-empty list")

    extra = write(tmp_path / "s4.yaml", "tasks:\n  - a.yaml\nmodel: gpt2\n")
    assert config_error(extra).startswith(f"{extra}:3: unknown key 'model' in a suite file")

    loop = write(tmp_path / "loop.yaml", "tasks:\n  - loop.yaml\n")
    assert "includes itself" in config_error(loop)


def test_error_inside_a_suite_entry_points_into_the_suite(tmp_path: Path) -> None:
    suite = write(
        tmp_path / "suite.yaml",
        """
        tasks:
          - name: a
            kind: perplexity
            data: {path: a.txt}
          - name: b
            kind: perplexity
            data: {path: b.txt}
            strides: 3
        """,
    )
    assert config_error(suite).startswith(f"{suite}:8: unknown key 'strides'")


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    inner = write(tmp_path / "tasks" / "inner.yaml", "name: x\nkind: nope\ndata: {path: a.txt}\n")
    suite = write(tmp_path / "suite.yaml", "tasks:\n  - tasks/inner.yaml\n")
    assert config_error(suite).startswith(f"{inner}:2: field 'kind'")


def test_duplicate_task_names(tmp_path: Path) -> None:
    suite = write(
        tmp_path / "suite.yaml",
        """
        tasks:
          - {name: a, kind: perplexity, data: {path: a.txt}}
          - {name: a, kind: perplexity, data: {path: b.txt}}
        """,
    )
    assert "task name 'a' is used twice" in config_error(suite)


def test_integer_label_keys_become_strings(tmp_path: Path) -> None:
    write(tmp_path / "s.tsv", "sentence\tlabel\ngreat\t1\nawful\t0\n")
    path = write(
        tmp_path / "s.yaml",
        """
        name: s
        kind: classification
        data: {path: s.tsv}
        prompt: "{sentence}"
        label: label
        labels: {0: negative, 1: positive}
        """,
    )
    (task,) = load_tasks(path)
    assert task.labels == {"0": "negative", "1": "positive"}
    items = load_items(task)
    assert [gold_label(task, item) for item in items] == ["1", "0"]


# --------------------------------------------------------------------------- data files


def test_missing_data_file_names_path_and_base(tmp_path: Path) -> None:
    (task,) = load_tasks(write(tmp_path / "quiz.yaml", MC_YAML))
    message = data_error(task)
    assert f"data file {tmp_path / 'quiz.jsonl'} not found" in message
    assert "data.path 'quiz.jsonl' is relative to the task file's folder" in message
    assert message.startswith("task 'quiz':")


def test_empty_data_file(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    (tmp_path / "quiz.jsonl").write_text("")
    assert data_error(task) == f"task 'quiz': {tmp_path / 'quiz.jsonl'}: data file is empty"
    (tmp_path / "quiz.jsonl").write_text("\n\n")
    assert "data file is empty" in data_error(task)


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    lines = [json.dumps(r) for r in MC_ROWS[:3]]
    lines[2] = lines[2][:-1]  # drop the closing brace
    (tmp_path / "quiz.jsonl").write_text("\n".join(lines) + "\n")
    message = data_error(task)
    assert message.startswith(f"task 'quiz': {tmp_path / 'quiz.jsonl'}:3: invalid JSON:")
    (tmp_path / "quiz.jsonl").write_text(lines[0] + "\n[1, 2]\n")
    assert "quiz.jsonl:2: expected a JSON object per line, got a list" in data_error(task)


def test_missing_required_column(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "choices"} for r in MC_ROWS]
    task = mc_task(tmp_path, rows)
    message = data_error(task)
    assert message == (
        f"task 'quiz': {tmp_path / 'quiz.jsonl'}: column 'choices' (the task's choices field) is "
        "missing (columns present: id, question, answer)"
    )


def test_column_missing_in_some_rows(tmp_path: Path) -> None:
    rows = [dict(r) for r in MC_ROWS]
    del rows[4]["answer"]
    message = data_error(mc_task(tmp_path, rows))
    assert "row 4 (id q4): column 'answer'" in message
    assert "1 rows lack it" in message


def test_prompt_field_not_in_data(tmp_path: Path) -> None:
    task = mc_task(tmp_path, yaml=MC_YAML.replace("{question}", "{question} ({subject})"))
    message = data_error(task)
    assert "prompt field '{subject}' is not in the data" in message
    assert "columns present: id, question, choices, answer" in message
    assert "quiz.jsonl" in message and "task 'quiz'" in message


@pytest.mark.parametrize(
    ("kind_yaml", "column"),
    [
        ("kind: classification\nlabel: sentiment\nlabels: {pos: positive}\n", "sentiment"),
        ("kind: generation\ntarget: reference\n", "reference"),
        ("kind: perplexity\ntext: body\n", "body"),
    ],
)
def test_required_column_per_kind(tmp_path: Path, kind_yaml: str, column: str) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "hello", "other": 1}])
    (task,) = load_tasks(
        write(tmp_path / "t.yaml", f"name: t\n{kind_yaml}data: {{path: d.jsonl}}\n")
    )
    message = data_error(task)
    assert f"column '{column}'" in message
    assert "columns present: text, other" in message


def test_perplexity_ignores_the_prompt(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"body": "hello"}])
    (task,) = load_tasks(
        write(tmp_path / "t.yaml", "name: t\nkind: perplexity\ntext: body\ndata: {path: d.jsonl}\n")
    )
    assert load_items(task) == [{"body": "hello", "_id": "0"}]


def test_invalid_answer_names_the_item(tmp_path: Path) -> None:
    rows = [dict(r) for r in MC_ROWS]
    rows[6]["answer"] = 7
    message = data_error(mc_task(tmp_path, rows))
    assert "item q6: answer 7 is not a choice index" in message
    assert "quiz.jsonl" in message


def test_unknown_classification_label(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "x", "label": "spam"}])
    (task,) = load_tasks(
        write(
            tmp_path / "t.yaml",
            "name: t\nkind: classification\nlabel: label\nlabels: {ham: ham, eggs: eggs}\n"
            "data: {path: d.jsonl}\n",
        )
    )
    message = data_error(task)
    assert "item 0: label 'spam' is not one of the task's labels (ham, eggs)" in message


def test_ids_and_limits(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    items = load_items(task)
    assert [item["_id"] for item in items] == [f"q{i}" for i in range(10)]
    assert [item["_id"] for item in load_items(task, limit=3)] == ["q0", "q1", "q2"]
    assert load_items(task, limit=0) == []

    limited = mc_task(tmp_path, yaml=MC_YAML.replace("  id: id\n", "  limit: 4\n"))
    assert [item["_id"] for item in load_items(limited)] == ["0", "1", "2", "3"]
    assert len(load_items(limited, limit=2)) == 2  # the smaller wins
    assert len(load_items(limited, limit=9)) == 4
    assert load_items(limited, limit=2) == load_items(limited, limit=2)  # deterministic
    with pytest.raises(ConfigError):
        load_items(limited, limit=-1)


def test_duplicate_and_missing_ids(tmp_path: Path) -> None:
    rows = [dict(r) for r in MC_ROWS]
    rows[5]["id"] = "q1"
    assert "id 'q1' appears in rows 1 and 5" in data_error(mc_task(tmp_path, rows))
    del rows[5]["id"]
    assert "row 5: id column 'id' (data.id) is missing" in data_error(mc_task(tmp_path, rows))


TABLE = pd.DataFrame(
    {
        "id": ["a1", "a2", "a3"],
        "text": ['she said "hi", then left', "plain", "tab\u00a0free, commas, too"],
        "label": ["pos", "neg", "pos"],
    }
)

CLS_YAML = """
name: cls
kind: classification
data: {{path: {path}, id: id}}
prompt: "{{text}}"
label: label
labels: {{pos: positive, neg: negative}}
"""


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet", "json", "json-data", "jsonl"])
def test_formats_read_the_same_table(tmp_path: Path, suffix: str) -> None:
    name = f"table.{suffix.split('-')[0]}"
    path = tmp_path / name
    if suffix == "csv":
        TABLE.to_csv(path, index=False)
    elif suffix == "tsv":
        path.write_text(TABLE.to_csv(sep="\t", index=False, quoting=3))  # QUOTE_NONE
    elif suffix == "parquet":
        TABLE.to_parquet(path, index=False)
    elif suffix == "json":
        TABLE.to_json(path, orient="records")
    elif suffix == "json-data":
        path.write_text(json.dumps({"data": TABLE.to_dict(orient="records")}))
    else:
        TABLE.to_json(path, orient="records", lines=True)
    (task,) = load_tasks(write(tmp_path / "cls.yaml", CLS_YAML.format(path=name)))
    items = load_items(task)
    expected = [{**row, "_id": row["id"]} for row in TABLE.to_dict(orient="records")]
    assert items == expected
    assert all(type(v) is str for item in items for v in item.values())


def test_headerless_tsv_with_columns(tmp_path: Path) -> None:
    write(tmp_path / "news.tsv", 'Stocks "rally" again\tBusiness\nGoal!\tSports\n')
    path = write(
        tmp_path / "news.yaml",
        """
        name: news
        kind: classification
        data:
          path: news.tsv
          columns: [text, label]
        prompt: "{text}"
        label: label
        labels: {Business: business, Sports: sports}
        """,
    )
    (task,) = load_tasks(path)
    assert load_items(task) == [
        {"text": 'Stocks "rally" again', "label": "Business", "_id": "0"},
        {"text": "Goal!", "label": "Sports", "_id": "1"},
    ]
    write(tmp_path / "news.tsv", "a\tBusiness\textra\n")
    assert "the file has 3 columns but data.columns names 2 (text, label)" in data_error(task)


def test_csv_cells_with_json_lists(tmp_path: Path) -> None:
    pd.DataFrame(
        {"question": ["2+2?"], "choices": ['["3", "4"]'], "labels": ['["A", "B"]'], "answer": ["B"]}
    ).to_csv(tmp_path / "q.csv", index=False)
    yaml = MC_YAML.replace("quiz.jsonl", "q.csv").replace("  id: id\n", "")
    (task,) = load_tasks(write(tmp_path / "q.yaml", yaml + "answer_labels: labels\n"))
    (item,) = load_items(task)
    assert item["choices"] == ["3", "4"]
    assert gold_index(task, item) == 1


def test_bad_json_file(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text('{"rows": [1]}')
    (task,) = load_tasks(
        write(tmp_path / "t.yaml", "name: t\nkind: perplexity\ndata: {path: t.json}\n")
    )
    assert 'expected a JSON list of objects or {"data": [...]}' in data_error(task)
    (tmp_path / "t.json").write_text('[{"text": "a"},\n {"text": ]')
    assert f"{tmp_path / 't.json'}:2: invalid JSON" in data_error(task)


def test_fewshot_file_is_checked(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "choices": ["a", "b"]}])
    yaml = MC_YAML + "fewshot: {path: train.jsonl, k: 1}\n"
    task = mc_task(tmp_path, yaml=yaml)
    message = data_error(task)
    assert f"{tmp_path / 'train.jsonl'}: column 'answer'" in message

    write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 0}])
    assert len(load_items(task)) == 10
    assert load_fewshot(task) == [{"question": "q", "choices": ["a", "b"], "answer": 0, "_id": "0"}]

    missing = mc_task(tmp_path, yaml=MC_YAML + "fewshot: {path: nope.jsonl, k: 1}\n")
    assert "fewshot.path 'nope.jsonl'" in data_error(missing)

    too_few = mc_task(tmp_path, yaml=MC_YAML + "fewshot: {path: train.jsonl, k: 2}\n")
    assert "fewshot.k is 2 but the file has only 1 rows" in data_error(too_few)

    template = mc_task(
        tmp_path,
        yaml=MC_YAML + 'fewshot: {path: train.jsonl, k: 1}\nfewshot_prompt: "{hint} {question}"\n',
    )
    assert "prompt field '{hint}' is not in the data" in data_error(template)


def test_fewshot_defaults_to_the_data_file(tmp_path: Path) -> None:
    task = mc_task(tmp_path, yaml=MC_YAML + "fewshot: {k: 2}\n")
    assert len(load_fewshot(task)) == 10
    assert load_fewshot(mc_task(tmp_path)) == []


# --------------------------------------------------------------------------- hash


def test_task_hash(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    first = task_hash(task)
    assert len(first) == 64 and first == task_hash(task)

    rows = [dict(r) for r in MC_ROWS]
    rows[0]["question"] = "changed?"
    write_jsonl(tmp_path / "quiz.jsonl", rows)
    assert task_hash(task) != first

    write_jsonl(tmp_path / "quiz.jsonl", MC_ROWS)
    assert task_hash(task) == first
    assert task_hash(task.model_copy(update={"choice_prefix": ""})) != first

    # the folder does not matter, only the config and the bytes
    other = tmp_path / "elsewhere"
    write_jsonl(other / "quiz.jsonl", MC_ROWS)
    (moved,) = load_tasks(write(other / "quiz.yaml", MC_YAML))
    assert task_hash(moved) == first


def test_task_hash_covers_the_fewshot_file(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", MC_ROWS[:2])
    task = mc_task(tmp_path, yaml=MC_YAML + "fewshot: {path: train.jsonl, k: 1}\n")
    first = task_hash(task)
    write_jsonl(tmp_path / "train.jsonl", MC_ROWS[:3])
    assert task_hash(task) != first


def test_task_hash_missing_file(tmp_path: Path) -> None:
    (task,) = load_tasks(write(tmp_path / "quiz.yaml", MC_YAML))
    with pytest.raises(DataError, match="not found"):
        task_hash(task)


# --------------------------------------------------------------------------- gold answers


def test_gold_index_int_and_digit_string(tmp_path: Path) -> None:
    task = mc_task(tmp_path)
    item = {"_id": "x", "choices": ["a", "b", "c"], "answer": 2}
    assert gold_index(task, item) == 2
    assert gold_index(task, {**item, "answer": "1"}) == 1
    for bad in (3, -1, "B", None, True):
        with pytest.raises(DataError, match="item x: answer"):
            gold_index(task, {**item, "answer": bad})
    with pytest.raises(DataError, match="item x: column 'choices' must hold"):
        gold_index(task, {**item, "choices": "a|b|c"})


def test_gold_index_labels(tmp_path: Path) -> None:
    task = mc_task(tmp_path).model_copy(update={"answer_labels": "labels"})
    letters = {"_id": "m1", "choices": ["w", "x", "y", "z"], "labels": list("ABCD"), "answer": "C"}
    assert gold_index(task, letters) == 2
    digits = {**letters, "labels": ["1", "2", "3", "4"], "answer": "1"}
    assert gold_index(task, digits) == 0
    assert gold_index(task, {**digits, "answer": 4}) == 3  # compared as strings
    with pytest.raises(DataError, match="item m1: answer 'E' is not one of the labels A, B, C, D"):
        gold_index(task, {**letters, "answer": "E"})
    with pytest.raises(DataError, match="list of 4 labels"):
        gold_index(task, {**letters, "labels": ["A", "B"]})


# --------------------------------------------------------------------------- text files


SAMPLE = "".join(
    f"Speaker {i}:\n" + "".join(f"line {i}.{j} of the speech\n" for j in range(i % 7 + 1)) + "\n"
    for i in range(300)
)


@pytest.mark.parametrize("size", [1, 50, 200, 1000, 100_000])
def test_chunks_cover_the_whole_text(size: int) -> None:
    chunks = chunk_text(SAMPLE, size)
    assert "".join(chunks) == SAMPLE
    assert chunks == chunk_text(SAMPLE, size)
    assert all(chunks)
    if size >= 50:
        assert all(len(c) <= size + size // 2 for c in chunks)
        # every cut but the last falls at a line end
        assert all(c.endswith("\n") for c in chunks[:-1])


def test_chunks_prefer_blank_lines() -> None:
    chunks = chunk_text(SAMPLE, 200)
    assert all(c.endswith("\n\n") for c in chunks[:-1])
    assert all(100 <= len(c) <= 300 for c in chunks[:-1])


def test_chunks_without_line_ends_are_cut_exactly() -> None:
    assert chunk_text("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert chunk_text("", 4) == []


def test_paragraph_documents() -> None:
    text = "\n\nFirst para\nstill first\n\n\nSecond\n  \nThird\n"
    assert chunk_text(text, None) == ["First para\nstill first", "Second", "Third"]


def test_txt_data_file(tmp_path: Path) -> None:
    write(tmp_path / "corpus.txt", SAMPLE)
    yaml = "name: c\nkind: perplexity\ndata:\n  path: corpus.txt\n  chunk_chars: 500\n"
    (task,) = load_tasks(write(tmp_path / "c.yaml", yaml))
    items = load_items(task)
    assert "".join(item["text"] for item in items) == SAMPLE
    assert [item["_id"] for item in items] == [str(i) for i in range(len(items))]
    assert len(load_items(task, limit=2)) == 2

    (paragraphs,) = load_tasks(
        write(tmp_path / "p.yaml", "name: p\nkind: perplexity\ndata: {path: corpus.txt}\n")
    )
    assert len(load_items(paragraphs)) == 300


def test_prompt_fields() -> None:
    assert prompt_fields("Q: {question}\n{choices[0]} {meta.source!r} {question:>{width}}") == [
        "question",
        "choices",
        "meta",
        "width",
    ]
    assert prompt_fields("no fields {{here}}") == []
    with pytest.raises(ValueError):
        prompt_fields("{0}")


def test_an_empty_document_is_refused_at_load_naming_file_and_row(tmp_path: Path) -> None:
    """A 0-byte document has no bits per byte; its interval ends came out NaN."""
    data = write_jsonl(tmp_path / "docs.jsonl", [{"text": "some words"}, {"text": ""}])
    path = write(
        tmp_path / "t.yaml", "name: docs\nkind: perplexity\ndata: {path: docs.jsonl}\ntext: text\n"
    )
    (task,) = load_tasks(path)
    with pytest.raises(DataError, match=rf"{data}: row 1 \(id 1\): column 'text' is empty"):
        load_items(task)


def test_positive_label_needs_a_two_label_classification_task(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "fine", "label": 1}])
    base = "name: t\nkind: classification\ndata: {path: d.jsonl}\nprompt: '{text}'\nlabel: label\n"
    good = write(tmp_path / "g.yaml", base + "labels: {0: negative, 1: positive}\npositive: 1\n")
    (task,) = load_tasks(good)
    assert task.positive == "1"
    assert task.metric_names[-3:] == ["precision_binary", "recall_binary", "f1_binary"]
    bad = write(tmp_path / "b.yaml", base + "labels: {0: negative, 1: positive}\npositive: 2\n")
    with pytest.raises(ConfigError, match="'positive': '2' is not a label"):
        load_tasks(bad)
    three = write(tmp_path / "c.yaml", base + "labels: {0: a, 1: b, 2: c}\npositive: 1\n")
    with pytest.raises(ConfigError, match=r"needs exactly two labels \(this task has 3\)"):
        load_tasks(three)
    ppl = "name: p\nkind: perplexity\ndata: {path: d.jsonl}\ntext: text\npositive: 1\n"
    with pytest.raises(ConfigError, match=r"for classification tasks \(this is a perplexity"):
        load_tasks(write(tmp_path / "p.yaml", ppl))
    listed = base + "labels: {0: negative, 1: positive}\nmetrics: [accuracy, f1_binary]\n"
    with pytest.raises(ConfigError, match="'f1_binary' needs 'positive'"):
        load_tasks(write(tmp_path / "l.yaml", listed))


def test_listed_metrics_are_resolved_and_checked_against_the_registry(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "fine", "label": 1}])
    base = (
        "name: t\nkind: classification\ndata: {path: d.jsonl}\nprompt: '{text}'\n"
        "label: label\nlabels: {0: negative, 1: positive}\n"
    )
    (task,) = load_tasks(write(tmp_path / "g.yaml", base + "metrics: [accuracy, f1, recall]\n"))
    assert task.metric_names == ["accuracy", "f1_macro", "recall_macro"]
    typo = write(tmp_path / "t.yaml", base + "metrics: [acuracy]\n")
    with pytest.raises(ConfigError, match=r"unknown metric 'acuracy' \(did you mean 'accuracy'"):
        load_tasks(typo)
    other = write(tmp_path / "o.yaml", base + "metrics: [acc]\n")
    with pytest.raises(ConfigError, match="'acc' is not reported by classification tasks"):
        load_tasks(other)
