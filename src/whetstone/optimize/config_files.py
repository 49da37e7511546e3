"""YAML config files read into pydantic models; every problem is one line with file:line, field."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from whetstone.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
INTERNAL = "base_dir"


def read_yaml(path: str | Path) -> tuple[dict[str, Any], yaml.Node]:
    """The mapping in a YAML file and its node tree (for line numbers)."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.load(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read the config file: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from exc
    if not isinstance(raw, dict) or node is None:
        raise ConfigError(f"{where}: expected a mapping of config fields")
    _check_duplicates(node, where)
    return raw, node


def _check_duplicates(node: yaml.Node, where: str) -> None:
    """YAML keeps the last of two equal keys silently; a config with both is a mistake."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ConfigError(f"{where}:{line_of(key)}: key {key.value!r} appears twice")
                seen.add(key.value)
            _check_duplicates(value, where)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicates(item, where)


def load_config(path: str | Path, model: type[M]) -> M:
    """Read the YAML file ``path`` into ``model``; relative paths resolve against its folder."""
    raw, node = read_yaml(path)
    return validate_section(raw, node, str(path), model, Path(path).resolve().parent)


def validate_section(
    raw: dict[str, Any], node: yaml.Node, where: str, model: type[M], base_dir: Path
) -> M:
    """Validate one mapping of a YAML file into ``model`` with a one-line ConfigError."""
    if INTERNAL in raw:
        raise ConfigError(f"{where}:{line_of(node_at(node, (INTERNAL,), key=True))}: unknown key")
    data = {**raw, INTERNAL: base_dir} if INTERNAL in model.model_fields else raw
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(error_line(exc, node, where, model)) from exc


def error_line(exc: ValidationError, root: yaml.Node, where: str, model: type[BaseModel]) -> str:
    """The first validation error as ``file:line: field 'a.b': what was expected``."""
    err = exc.errors()[0]
    # pydantic adds the union member's name ("str", "dict[str,any]") to the location
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p == "str")))
    more = len(exc.errors()) - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    dotted = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        fields = fields_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), fields, 1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"{where}:{line_of(node_at(root, loc, key=True))}: unknown key '{dotted}' "
            f"({hint}expected one of: {', '.join(fields)}){tail}"
        )
    if err["type"] == "missing":
        return f"{where}:{line_of(node_at(root, loc[:-1]))}: field '{dotted}': required{tail}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    msg = msg.replace("Input should be", "expected")
    got = "" if isinstance(err.get("input"), dict) else f", got {err.get('input')!r}"
    return (
        f"{where}:{line_of(node_at(root, loc))}: field '{dotted or '(config)'}': {msg}{got}{tail}"
    )


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) model at ``loc``."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", {})
        current = _model_in(fields[part].annotation) if part in fields else None
    fields = getattr(current, "model_fields", {}) if isinstance(current, type) else {}
    return [name for name in fields if name != INTERNAL]


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def node_at(root: yaml.Node, loc: tuple[Any, ...], key: bool = False) -> yaml.Node:
    """The deepest node along ``loc`` (the key's node for the last part when ``key``)."""
    node = root
    for i, part in enumerate(loc):
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = k if key and i == len(loc) - 1 else v
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        if nxt is None:
            return node
        node = nxt
    return node


def line_of(node: yaml.Node) -> int:
    """1-based line of a node."""
    return int(node.start_mark.line) + 1
