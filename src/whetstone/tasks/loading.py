"""Reading task files (YAML) and the data they point to.

Every problem is reported as one line: a `ConfigError` for task and suite files (naming the
file, the line and the field) and a `DataError` for data files (naming the task, the file and
the column or row).
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import re
import string
import types
import typing
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from whetstone.errors import ConfigError, DataError
from whetstone.tasks.schema import TaskConfig

__all__ = [
    "DATA_SUFFIXES",
    "chunk_text",
    "gold_index",
    "gold_label",
    "load_fewshot",
    "load_items",
    "load_tasks",
    "prompt_fields",
    "task_hash",
]

DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")
SUITE_KEYS = ("name", "description", "tasks")
_INTERNAL_FIELDS = frozenset({"base_dir"})


# --------------------------------------------------------------------------- task files


def load_tasks(path: str | Path) -> list[TaskConfig]:
    """The tasks of a YAML task file (one task) or suite file (`tasks:` list).

    A suite's entries are task mappings or paths of other task (or suite) files, relative to the
    suite file. Each task's `base_dir` is the folder of the YAML file that defines it.
    """
    tasks = _load_file(Path(path), stack=())
    seen: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if task.name in seen:
            raise ConfigError(
                f"{path}: task name '{task.name}' is used twice (tasks {seen[task.name] + 1} "
                f"and {i + 1}); task names must be unique"
            )
        seen[task.name] = i
    return tasks


def _load_file(path: Path, stack: tuple[Path, ...]) -> list[TaskConfig]:
    where = str(path)
    if not path.exists():
        raise ConfigError(f"{where}: task file not found")
    if path.is_dir():
        raise ConfigError(f"{where}: is a folder, expected a YAML task file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the task file: {e}") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error_line(where, e)) from e
    if node is None or raw is None:
        raise ConfigError(f"{where}: the task file is empty (expected a mapping of task fields)")
    _check_duplicate_keys(node, where)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}:{_line(node)}: expected a mapping of task fields (or a suite with "
            f"'tasks:'), got {_kind_of(raw)}"
        )
    base_dir = path.parent
    if "tasks" not in raw:
        return [_build_task(raw, node, where, base_dir)]

    # a suite
    for key in raw:
        if key not in SUITE_KEYS:
            raise ConfigError(
                f"{where}:{_line(_key_node(node, key) or node)}: unknown key {key!r} in a suite "
                f"file (expected one of: {', '.join(SUITE_KEYS)})"
            )
    entries = raw["tasks"]
    entries_node = _value_node(node, "tasks") or node
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{where}:{_line(entries_node)}: field 'tasks': expected a non-empty list of task "
            f"mappings or task file paths, got {_kind_of(entries)}"
        )
    resolved = path.resolve()
    tasks: list[TaskConfig] = []
    for i, entry in enumerate(entries):
        entry_node = _item_node(entries_node, i) or entries_node
        if isinstance(entry, dict):
            tasks.append(_build_task(entry, entry_node, where, base_dir))
        elif isinstance(entry, str) and entry.strip():
            sub = Path(entry).expanduser()
            sub = sub if sub.is_absolute() else base_dir / sub
            if not sub.exists():
                raise ConfigError(
                    f"{where}:{_line(entry_node)}: task file {entry!r} not found "
                    f"(looked for {sub}, paths are relative to the suite file's folder)"
                )
            if sub.resolve() in (*stack, resolved):
                raise ConfigError(
                    f"{where}:{_line(entry_node)}: suite includes itself via {entry!r}"
                )
            tasks.extend(_load_file(sub, (*stack, resolved)))
        else:
            raise ConfigError(
                f"{where}:{_line(entry_node)}: field 'tasks[{i}]': expected a task mapping or a "
                f"task file path, got {_kind_of(entry)}"
            )
    return tasks


def _build_task(raw: dict[Any, Any], node: yaml.Node, where: str, base_dir: Path) -> TaskConfig:
    for key in raw:
        if key in _INTERNAL_FIELDS or not isinstance(key, str):
            raise ConfigError(
                f"{where}:{_line(_key_node(node, key) or node)}: unknown key {key!r} "
                f"(expected one of: {', '.join(_field_names(TaskConfig))})"
            )
    try:
        task = TaskConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as e:
        raise ConfigError(_validation_error_line(e, node, where)) from e
    for field in ("prompt", "fewshot_prompt"):
        template = getattr(task, field)
        if template is None:
            continue
        try:
            prompt_fields(template)
        except ValueError as e:
            line = _line(_value_node(node, field) or node)
            raise ConfigError(
                f"{where}:{line}: field '{field}': expected a str.format template with named "
                f"fields such as {{question}} (write {{{{ and }}}} for literal braces): {e}"
            ) from e
    suffix = Path(task.data.path).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        data_node = _value_node(node, "data")
        line = _line((_value_node(data_node, "path") if data_node else None) or node)
        raise ConfigError(
            f"{where}:{line}: field 'data.path': expected a file ending in "
            f"{', '.join(DATA_SUFFIXES)}, got {task.data.path!r}"
        )
    return task


def _check_duplicate_keys(node: yaml.Node, where: str) -> None:
    """YAML keeps the last of two equal keys silently; a task file with both is a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ConfigError(
                        f"{where}:{_line(key)}: key {key.value!r} appears twice (first on line "
                        f"{seen[key.value]})"
                    )
                seen[key.value] = _line(key)
            _check_duplicate_keys(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, where)


def prompt_fields(template: str) -> list[str]:
    """The item columns a str.format template reads, in order of first use.

    `{question}`, `{question!r}` and `{meta[source]}` read the columns question, question and
    meta. Positional fields (`{}`, `{0}`) are refused with a ValueError, as are malformed
    templates.
    """
    names: list[str] = []
    for _literal, field, spec, _conversion in string.Formatter().parse(template):
        if field is None:
            continue
        base = re.split(r"[.\[]", field, maxsplit=1)[0]
        if base == "" or base.isdigit():
            raise ValueError(f"positional field {{{field}}}: name an item column instead")
        if base not in names:
            names.append(base)
        if spec:  # nested fields in the format spec: "{x:{width}}"
            names.extend(n for n in prompt_fields(spec) if n not in names)
    return names


def _yaml_error_line(where: str, e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    detail = f"{context}, {problem}" if context else problem
    if mark is not None:
        return f"{where}:{mark.line + 1}: invalid YAML: {detail} (column {mark.column + 1})"
    return f"{where}: invalid YAML: {detail}"


def _validation_error_line(e: ValidationError, root: yaml.Node, where: str) -> str:
    errors = e.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    etype = err["type"]
    more = len(errors) - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    dotted = _dotted(loc)

    if etype == "extra_forbidden":
        node = _node_at(root, loc, key=True)
        model = _model_at(TaskConfig, loc[:-1])
        expected = ", ".join(_field_names(model)) if model else "?"
        close = difflib.get_close_matches(str(loc[-1]), _field_names(model) if model else [], 1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        prefix = f"'{_dotted(loc[:-1])}': " if len(loc) > 1 else ""
        return (
            f"{where}:{_line(node)}: {prefix}unknown key {str(loc[-1])!r} "
            f"({hint}expected one of: {expected}){tail}"
        )
    if etype == "missing":
        parent = _node_at(root, loc[:-1])
        return f"{where}:{_line(parent)}: field '{dotted}': required but missing{tail}"

    node = _node_at(root, loc)
    got = f", got {err['input']!r}" if "input" in err and not isinstance(err["input"], dict) else ""
    if etype == "literal_error":
        options = _literal_options(loc)
        expected = f"expected one of {', '.join(options)}" if options else _expected(err["msg"])
        return f"{where}:{_line(node)}: field '{dotted}': {expected}{got}{tail}"
    msg = err["msg"]
    if etype == "value_error":
        msg = msg.removeprefix("Value error, ")
        if not loc:  # a whole-model check: point at `kind`, the field it depends on
            node = _value_node(root, "kind") or root
            return f"{where}:{_line(node)}: {msg}{tail}"
        return f"{where}:{_line(node)}: field '{dotted}': {msg}{tail}"
    return f"{where}:{_line(node)}: field '{dotted or '(task)'}': {_expected(msg)}{got}{tail}"


def _expected(msg: str) -> str:
    for prefix in ("Input should be ", "input should be "):
        if msg.startswith(prefix):
            return "expected " + msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _kind_of(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def _key_node(node: yaml.Node | None, key: object) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return k
    return None


def _value_node(node: yaml.Node | None, key: object) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return v
    return None


def _item_node(node: yaml.Node | None, index: int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and 0 <= index < len(node.value):
        return node.value[index]
    return None


def _node_at(root: yaml.Node, loc: tuple[Any, ...], key: bool = False) -> yaml.Node:
    """The deepest YAML node along a pydantic error location (the key node if `key`)."""
    node = root
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            continue
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            nxt = _item_node(node, part)
        elif key and last:
            nxt = _key_node(node, part)
        else:
            nxt = _value_node(node, part)
        if nxt is None:
            return node
        node = nxt
    return node


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _unwrap_model(arg)
            if found:
                return found
    return None


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _unwrap_model(model.model_fields[part].annotation)
    return model


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [name for name in model.model_fields if name not in _INTERNAL_FIELDS]


def _literal_options(loc: tuple[Any, ...]) -> list[str]:
    if not loc or not isinstance(loc[-1], str):
        return []
    model = _model_at(TaskConfig, loc[:-1])
    if model is None or loc[-1] not in model.model_fields:
        return []
    annotation = model.model_fields[loc[-1]].annotation
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return []


# --------------------------------------------------------------------------- data files


def load_items(task: TaskConfig, limit: int | None = None) -> list[dict[str, Any]]:
    """The task's items: the first rows of its data file, each with a string id under "_id".

    The id is the `data.id` column's value or the 0-based row number. `data.limit` and `limit`
    both cap the number of rows (the smaller wins). Checks that the columns the task reads are
    present (and, for multiple choice and classification, that each gold answer is valid); when
    few-shot examples are configured, checks their file the same way.
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"task '{task.name}': limit must be 0 or more, got {limit}")
    caps = [n for n in (task.data.limit, limit) if n is not None]
    cap = min(caps) if caps else None
    path = _data_path(task, task.data.path, "data.path")
    items = _read_items(task, path, cap)
    _check_items(task, path, items, _required_columns(task, task.prompt))
    if task.fewshot is not None and (task.fewshot.path is not None or task.fewshot.k > 0):
        load_fewshot(task)
    return items


def load_fewshot(task: TaskConfig) -> list[dict[str, Any]]:
    """All rows of the few-shot file (`fewshot.path`, default the data file), checked like
    `load_items` checks the data (with `fewshot_prompt`'s fields when it is set).
    Empty when the task has no few-shot section."""
    if task.fewshot is None:
        return []
    rel = task.fewshot.path or task.data.path
    path = _data_path(task, rel, "fewshot.path" if task.fewshot.path else "data.path")
    items = _read_items(task, path, None, strict_ids=False)
    template = task.fewshot_prompt or task.prompt
    _check_items(task, path, items, _required_columns(task, template))
    if task.fewshot.k > len(items):
        raise DataError(
            f"task '{task.name}': {path}: fewshot.k is {task.fewshot.k} but the file has only "
            f"{len(items)} rows"
        )
    return items


def task_hash(task: TaskConfig) -> str:
    """sha256 over the task's canonical JSON (without base_dir) and the bytes of its data
    file(s): equal hashes mean the same task on the same data."""
    h = hashlib.sha256()
    config = json.dumps(
        task.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    h.update(b"config\0" + config.encode("utf-8") + b"\0")
    paths = [_data_path(task, task.data.path, "data.path")]
    if task.fewshot is not None and task.fewshot.path is not None:
        fewshot = _data_path(task, task.fewshot.path, "fewshot.path")
        if fewshot.resolve() != paths[0].resolve():
            paths.append(fewshot)
    for path in paths:
        h.update(b"file\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def gold_index(task: TaskConfig, item: dict[str, Any]) -> int:
    """The index of the gold choice of a multiple-choice item.

    The `answer` column holds an int index (or a string of digits), or, when `answer_labels` is
    set, a label found in that item's labels (ARC: "A".."D" or "1".."4"; labels are compared as
    strings, so the int 2 matches the label "2").
    """
    item_id = item.get("_id", "?")
    if task.choices is None or task.answer is None:
        raise ConfigError(f"task '{task.name}': gold_index needs the fields 'choices' and 'answer'")
    choices = item.get(task.choices)
    if not isinstance(choices, list | tuple) or not choices:
        raise DataError(
            f"task '{task.name}': item {item_id}: column '{task.choices}' must hold a non-empty "
            f"list of choice texts, got {_short(choices)}"
        )
    empty = [i for i, choice in enumerate(choices) if str(choice) == ""]
    if empty:
        raise DataError(
            f"task '{task.name}': item {item_id}: choice {empty[0]} in column '{task.choices}' "
            "is empty (expected a non-empty text for every choice)"
        )
    value = item.get(task.answer)
    if task.answer_labels is not None:
        labels = item.get(task.answer_labels)
        if not isinstance(labels, list | tuple) or len(labels) != len(choices):
            raise DataError(
                f"task '{task.name}': item {item_id}: column '{task.answer_labels}' must hold a "
                f"list of {len(choices)} labels (one per choice), got {_short(labels)}"
            )
        as_text = [str(label) for label in labels]
        if value is not None and str(value) in as_text:
            return as_text.index(str(value))
        raise DataError(
            f"task '{task.name}': item {item_id}: answer {value!r} is not one of the labels "
            f"{', '.join(as_text)}"
        )
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    if index is None or not 0 <= index < len(choices):
        raise DataError(
            f"task '{task.name}': item {item_id}: answer {value!r} is not a choice index "
            f"(expected an int from 0 to {len(choices) - 1}, or set answer_labels)"
        )
    return index


def gold_label(task: TaskConfig, item: dict[str, Any]) -> str:
    """The gold label of a classification item as a key of `labels` (values compared as
    strings, so the int 0 matches the key "0")."""
    if task.label is None or task.labels is None:
        raise ConfigError(f"task '{task.name}': gold_label needs the fields 'label' and 'labels'")
    value = item.get(task.label)
    key = str(value)
    if value is None or key not in task.labels:
        raise DataError(
            f"task '{task.name}': item {item.get('_id', '?')}: label {value!r} is not one of "
            f"the task's labels ({', '.join(task.labels)})"
        )
    return key


def chunk_text(text: str, chunk_chars: int | None) -> list[str]:
    """Split a plain text into documents, deterministically.

    With `chunk_chars`, documents are consecutive slices of about that many characters, so that
    joining them gives back the whole text. Each cut goes at the end of a run of blank lines
    nearest to `chunk_chars` characters after the start (looking between half and one and a half
    times that length), else at the nearest line end in that span, else exactly at
    `chunk_chars`. The rest becomes the last document once it is at most `chunk_chars` long.

    Without `chunk_chars`, each blank-line-separated paragraph is one document (without the
    blank lines around it); empty paragraphs are dropped.
    """
    if chunk_chars is None:
        paragraphs = re.split(r"\n[ \t]*\n(?:[ \t]*\n)*", text)
        return [p.strip("\n") for p in paragraphs if p.strip()]
    if chunk_chars < 1:
        raise ValueError("chunk_chars must be at least 1")
    blank_cuts = [m.end() for m in re.finditer(r"\n(?:[ \t]*\n)+", text)]
    line_cuts = [m.end() for m in re.finditer(r"\n", text)]
    docs: list[str] = []
    start = 0
    while len(text) - start > chunk_chars:
        target = start + chunk_chars
        low, high = start + max(1, chunk_chars // 2), start + chunk_chars + chunk_chars // 2
        cut = _nearest(blank_cuts, target, low, high)
        if cut is None:
            cut = _nearest(line_cuts, target, low, high)
        if cut is None or cut >= len(text):
            cut = target
        docs.append(text[start:cut])
        start = cut
    if start < len(text):
        docs.append(text[start:])
    return docs


def _nearest(cuts: list[int], target: int, low: int, high: int) -> int | None:
    """The cut position within [low, high] nearest to target (the earlier one on a tie)."""
    i = bisect_left(cuts, target)
    best: int | None = None
    for j in (i - 1, i):
        if 0 <= j < len(cuts) and low <= cuts[j] <= high:
            c = cuts[j]
            if best is None or abs(c - target) < abs(best - target):
                best = c
    return best


def _data_path(task: TaskConfig, rel: str, field: str) -> Path:
    path = task.resolve(rel)
    if not path.is_file():
        what = "is a folder, not a data file" if path.is_dir() else "not found"
        raise DataError(
            f"task '{task.name}': data file {path} {what} ({field} {rel!r} is relative to "
            f"the task file's folder {task.base_dir.resolve()})"
        )
    return path


def _read_items(
    task: TaskConfig, path: Path, cap: int | None, strict_ids: bool = True
) -> list[dict[str, Any]]:
    prefix = f"task '{task.name}': {path}"
    if path.stat().st_size == 0:
        raise DataError(f"{prefix}: data file is empty")
    suffix = path.suffix.lower()
    read_cap = None if cap is None else max(cap, 1)
    rows: list[dict[str, Any]]
    if suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(task.name, path, read_cap)
    elif suffix == ".json":
        rows = _read_json(path, prefix)
    elif suffix in (".csv", ".tsv"):
        rows = _read_table(task, path, prefix)
    elif suffix == ".parquet":
        rows = _read_parquet(path, prefix)
    elif suffix == ".txt":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{prefix}: not UTF-8 text: {e}") from e
        rows = [{task.text: doc} for doc in chunk_text(text, task.data.chunk_chars)]
        if not rows:
            raise DataError(f"{prefix}: data file is empty (only blank lines)")
    else:
        raise DataError(
            f"{prefix}: unsupported data file type {suffix!r} (expected one of "
            f"{', '.join(DATA_SUFFIXES)})"
        )
    if not rows:
        raise DataError(f"{prefix}: data file has no rows")
    if cap is not None:
        rows = rows[:cap]
    return _with_ids(task, path, rows, strict_ids)


def _read_jsonl(name: str, path: Path, cap: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if cap is not None and len(rows) >= cap:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"task '{name}': {path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})"
                ) from e
            if not isinstance(row, dict):
                raise DataError(
                    f"task '{name}': {path}:{lineno}: expected a JSON object per line, "
                    f"got {_kind_of(row)}"
                )
            rows.append(row)
    if not rows:
        raise DataError(f"task '{name}': {path}: data file is empty (only blank lines)")
    return rows


def _read_json(path: Path, prefix: str) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError(f"{prefix}: data file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{prefix}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(
            f'{prefix}: expected a JSON list of objects or {{"data": [...]}}, got {_kind_of(data)}'
        )
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{prefix}: row {i}: expected a JSON object, got {_kind_of(row)}")
    return data


def _read_table(task: TaskConfig, path: Path, prefix: str) -> list[dict[str, Any]]:
    import pandas as pd

    tsv = path.suffix.lower() == ".tsv"
    names = task.data.columns
    try:
        frame = pd.read_csv(
            path,
            sep="\t" if tsv else ",",
            header=None if names else "infer",
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
            encoding="utf-8-sig",
            index_col=False,
        )
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{prefix}: data file is empty") from e
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{prefix}: cannot read the table: {str(e).strip()}") from e
    if names:
        if len(frame.columns) != len(names):
            raise DataError(
                f"{prefix}: the file has {len(frame.columns)} columns but data.columns names "
                f"{len(names)} ({', '.join(names)})"
            )
        frame.columns = list(names)
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]
    # lists cannot live in a csv/tsv cell: accept JSON arrays for the list-valued columns
    for column in (task.choices, task.answer_labels):
        if column is None:
            continue
        for row in rows:
            value = row.get(column)
            if isinstance(value, str) and value.lstrip().startswith("["):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    continue
                if isinstance(parsed, list):
                    row[column] = parsed
    return rows


def _read_parquet(path: Path, prefix: str) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{prefix}: cannot read the parquet file: {e}") from e
    return rows


def _with_ids(
    task: TaskConfig, path: Path, rows: list[dict[str, Any]], strict: bool = True
) -> list[dict[str, Any]]:
    """Add "_id" to each row. Not strict (a few-shot file): rows without a usable id column
    get their row number, and ids need not be unique."""
    id_column = task.data.id
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        item = dict(row)
        if id_column is None or (
            not strict and (row.get(id_column) is None or str(row[id_column]) == "")
        ):
            item_id = str(i)
        else:
            if id_column not in row:
                raise DataError(
                    f"task '{task.name}': {path}: row {i}: id column '{id_column}' (data.id) is "
                    f"missing (columns present: {_columns(row)})"
                )
            value = row[id_column]
            if value is None or str(value) == "":
                raise DataError(
                    f"task '{task.name}': {path}: row {i}: id column '{id_column}' is empty"
                )
            item_id = str(value)
            if strict and item_id in seen:
                raise DataError(
                    f"task '{task.name}': {path}: id {item_id!r} appears in rows {seen[item_id]} "
                    f"and {i}; the id column '{id_column}' must be unique"
                )
            seen[item_id] = i
        item["_id"] = item_id
        items.append(item)
    return items


def _required_columns(task: TaskConfig, template: str) -> list[tuple[str, str]]:
    """(column, why) pairs the task reads from each item."""
    required: list[tuple[str, str]] = []
    if task.kind == "multiple_choice":
        assert task.choices is not None and task.answer is not None
        required += [(task.choices, "choices"), (task.answer, "answer")]
        if task.answer_labels is not None:
            required.append((task.answer_labels, "answer_labels"))
    elif task.kind == "classification":
        assert task.label is not None
        required.append((task.label, "label"))
    elif task.kind == "generation":
        assert task.target is not None
        required.append((task.target, "target"))
    else:  # perplexity scores the `text` column; the prompt is not used
        required.append((task.text, "text"))
        return required
    names = {column for column, _why in required}
    for field in prompt_fields(template):
        if field not in names:
            required.append((field, "prompt"))
            names.add(field)
    return required


def _check_items(
    task: TaskConfig,
    path: Path,
    items: list[dict[str, Any]],
    required: Iterable[tuple[str, str]],
) -> None:
    for column, why in required:
        lacking = [i for i, item in enumerate(items) if column not in item]
        if not lacking:
            continue
        row = items[lacking[0]]
        if why == "prompt":
            what = f"prompt field '{{{column}}}' is not in the data"
        else:
            what = f"column '{column}' (the task's {why} field) is missing"
        if len(lacking) == len(items):
            raise DataError(
                f"task '{task.name}': {path}: {what} (columns present: {_columns(row)})"
            )
        raise DataError(
            f"task '{task.name}': {path}: row {lacking[0]} (id {row['_id']}): {what} "
            f"(columns present in that row: {_columns(row)}; {len(lacking)} rows lack it)"
        )
    for row_number, item in enumerate(items):
        try:
            if task.kind == "multiple_choice":
                gold_index(task, item)
            elif task.kind == "classification":
                gold_label(task, item)
        except DataError as e:  # name the file too
            head = f"task '{task.name}': "
            raise DataError(str(e).replace(head, f"{head}{path}: ", 1)) from None
        if task.kind == "perplexity" and not isinstance(item[task.text], str):
            raise DataError(
                f"task '{task.name}': {path}: item {item['_id']}: column '{task.text}' must hold "
                f"text, got {_short(item[task.text])}"
            )
        if task.kind == "perplexity" and not item[task.text]:
            raise DataError(
                f"task '{task.name}': {path}: row {row_number} (id {item['_id']}): column "
                f"'{task.text}' is empty (a document needs at least one byte to be scored)"
            )


def _columns(row: dict[str, Any]) -> str:
    return ", ".join(str(k) for k in row if k != "_id") or "(none)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
