"""Reading a pipeline file: YAML into `PipelineConfig`, every problem as one line with file:line."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from whetstone.errors import ConfigError
from whetstone.pipeline.schema import PipelineConfig


def load_pipeline(path: str | Path) -> PipelineConfig:
    """The pipeline of a YAML file; a ConfigError naming the file, line and field otherwise."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: pipeline file not found")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read the pipeline file: {err}") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from err
    if not isinstance(raw, dict) or node is None:
        raise ConfigError(f"{where}: expected a mapping of pipeline fields (name, model, tasks...)")
    if "base_dir" in raw:
        raise ConfigError(f"{where}:{_line(_node_at(node, ('base_dir',), True))}: unknown key")
    return parse_pipeline(raw, base_dir=path.resolve().parent, where=where, node=node)


def parse_pipeline(
    raw: dict[str, Any],
    *,
    base_dir: Path,
    where: str = "pipeline",
    node: yaml.Node | None = None,
) -> PipelineConfig:
    """A PipelineConfig from a mapping (paths relative to `base_dir`), errors as one line."""
    try:
        return PipelineConfig.model_validate({**raw, "base_dir": base_dir})
    except ValidationError as err:
        raise ConfigError(validation_error_line(err, PipelineConfig, where, node)) from err


def validation_error_line(
    err: ValidationError, model: type[BaseModel], where: str, node: yaml.Node | None
) -> str:
    """The first error of `err` as `FILE:LINE: field 'a.b': what was expected`."""
    # a misspelt key also makes its right spelling "missing": name the misspelling first
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = tuple(first["loc"])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    dotted = _dotted(loc)
    line = _line(_node_at(node, loc, key=first["type"] == "extra_forbidden"))
    if first["type"] == "extra_forbidden":
        known = _field_names(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, 1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (
            f"{where}:{line}: unknown key '{dotted}' ({hint}expected one of: "
            f"{', '.join(known)}){more}"
        )
    if first["type"] == "missing":
        return f"{where}:{line}: field '{dotted}': required but missing{more}"
    msg = str(first["msg"]).removeprefix("Value error, ")
    msg = msg.replace("Input should be", "expected").replace("String should", "expected to")
    got = first.get("input")
    shown = f", got {got!r}" if got is not None and not isinstance(got, dict | list) else ""
    field = f"field '{dotted}': " if dotted else ""
    return f"{where}:{line}: {field}{msg}{shown}{more}"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The fields a user may write at `loc` inside `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        info = current.model_fields.get(part) if is_model else None
        if info is None:
            return []
        current = _model_of(info.annotation)
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    return [n for n in current.model_fields if n != "base_dir"]


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside `X`, `X | None` or `list[X]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _node_at(node: yaml.Node | None, loc: tuple[Any, ...], key: bool = False) -> yaml.Node | None:
    """The deepest YAML node along an error location (the key's node for an unknown key)."""
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            nxt = node.value[part] if part < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = k if key and last else v
        if nxt is None:
            return node
        node = nxt
    return node
