"""The error taxonomy: named categories, the rules that assign them, and an optional LLM judge.

A taxonomy is a YAML file the user controls (no code inside: rules are conditions on detector
names, task kinds, metrics, tags and regular expressions). The seed taxonomy shipped with
whetstone (``taxonomy.yaml`` next to this module) holds the categories semantic, syntactic,
factual, reasoning and formatting; the feedback studio offers the same names as error tags.

```yaml
extends: default            # optional: start from the seed categories (same names replace)
categories:
  - name: hallucinated_api
    description: The answer names a function or setting that does not exist.
    aliases: [made-up api]
    rules:                  # a failure gets the category when any rule holds;
      - output: "\\bsettings\\.\\w+\\("    # a rule holds when all its conditions hold
        task: [support_*]
judge: {model: default, method: likelihood}
```
"""

from __future__ import annotations

import fnmatch
import re
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from whetstone.diagnose.detectors import DETECTORS
from whetstone.diagnose.schema import Observation
from whetstone.errors import ConfigError

__all__ = [
    "Category",
    "JudgeSpec",
    "MetricBound",
    "Rule",
    "Taxonomy",
    "default_taxonomy_path",
    "load_taxonomy",
    "normalize_tag",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_REGEX_FIELDS = ("output", "reference", "prompt", "comment")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_tag(tag: str) -> str:
    """A tag or name as compared: lower case, runs of spaces, dashes and slashes as one ``_``."""
    return re.sub(r"[\s\-/]+", "_", tag.strip().lower())


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class MetricBound(_Strict):
    """A per-item metric below and/or above a bound (both bounds exclusive)."""

    name: str
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> MetricBound:
        if self.below is None and self.above is None:
            raise ValueError("give 'below' or 'above' (or both)")
        return self

    def holds(self, metrics: dict[str, float]) -> bool:
        """True when the metric is present and within the bounds."""
        value = metrics.get(self.name)
        if value is None or value != value:  # absent or NaN
            return False
        if self.below is not None and not value < self.below:
            return False
        return self.above is None or value > self.above


class Rule(_Strict):
    """Conditions that together assign a category to a failure (all given ones must hold).

    ``detector``, ``kind``, ``task`` and ``tag`` hold when any listed value matches;
    ``output``, ``reference``, ``prompt`` and ``comment`` are regular expressions searched
    case-insensitively in that text.
    """

    detector: list[str] | None = None
    kind: list[str] | None = None
    task: list[str] | None = None  # task names, shell-style wildcards allowed
    source: Literal["sample", "feedback"] | None = None
    tag: list[str] | None = None
    metric: MetricBound | None = None
    output: str | None = None
    reference: str | None = None
    prompt: str | None = None
    comment: str | None = None

    _as_lists = field_validator("detector", "kind", "task", "tag", mode="before")(_as_list)

    @field_validator("detector")
    @classmethod
    def _known_detectors(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in DETECTORS:
                raise ValueError(
                    f"unknown detector {name!r} (expected one of: {', '.join(DETECTORS.names())})"
                )
        return value

    @field_validator(*_REGEX_FIELDS)
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise ValueError(f"invalid regular expression {value!r}: {e}") from e
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Rule:
        if not any(getattr(self, f) is not None for f in type(self).model_fields):
            raise ValueError("a rule needs at least one condition")
        return self

    @cached_property
    def _patterns(self) -> dict[str, re.Pattern[str]]:
        return {
            f: re.compile(getattr(self, f), re.IGNORECASE)
            for f in _REGEX_FIELDS
            if getattr(self, f) is not None
        }

    def matches(self, obs: Observation) -> bool:
        """True when every condition of the rule holds for this observation."""
        if self.detector is not None and not set(self.detector) & set(obs.detectors):
            return False
        if self.kind is not None and obs.kind not in self.kind:
            return False
        if self.task is not None and not any(fnmatch.fnmatchcase(obs.task, t) for t in self.task):
            return False
        if self.source is not None and obs.source != self.source:
            return False
        if self.tag is not None:
            wanted = {normalize_tag(t) for t in self.tag}
            if not wanted & {normalize_tag(t) for t in obs.tags}:
                return False
        if self.metric is not None and not self.metric.holds(obs.metrics):
            return False
        texts = {
            "output": obs.output,
            "reference": obs.reference,
            "prompt": obs.prompt,
            "comment": obs.comment,
        }
        for field, pattern in self._patterns.items():
            text = texts[field]
            if text is None or not pattern.search(text):
                return False
        return True


class Category(_Strict):
    """One error category: a short name, what it means, other names for it, and its rules."""

    name: str
    description: str
    aliases: list[str] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"category name {value!r} must be lower case letters, digits and '_', "
                "starting with a letter"
            )
        return value

    def matches(self, obs: Observation) -> bool:
        """True when any of the category's rules holds for this observation."""
        return any(rule.matches(obs) for rule in self.rules)


class JudgeSpec(_Strict):
    """An LLM that assigns one category to each failure.

    ``likelihood`` scores each category name as the continuation of the judge prompt (robust
    with small models); ``generate`` lets the model write an answer and looks for a name in it.
    """

    model: str
    base_url: str | None = None  # for openai:NAME, the OpenAI-compatible server
    method: Literal["likelihood", "generate"] = "likelihood"
    max_failures: int = Field(default=200, ge=1)
    max_chars: int = Field(default=600, ge=50)  # prompt, output and reference are cut to this
    max_new_tokens: int = Field(default=16, ge=1)


class Taxonomy(_Strict):
    """Error categories in order, with an optional judge."""

    extends: Literal["default"] | None = None
    categories: list[Category]
    judge: JudgeSpec | None = None

    @model_validator(mode="after")
    def _unique(self) -> Taxonomy:
        if not self.categories:
            raise ValueError("a taxonomy needs at least one category")
        seen: dict[str, str] = {}
        for cat in self.categories:
            for label in (cat.name, *cat.aliases):
                key = normalize_tag(label)
                if key in seen:
                    raise ValueError(
                        f"{label!r} of category {cat.name!r} is already a name or alias of "
                        f"category {seen[key]!r}"
                    )
                seen[key] = cat.name
        return self

    def names(self) -> list[str]:
        """The category names in order (the error tags the feedback studio offers)."""
        return [c.name for c in self.categories]

    def get(self, name: str) -> Category:
        """The category with this name; KeyError if none."""
        for cat in self.categories:
            if cat.name == name:
                return cat
        raise KeyError(name)

    def resolve(self, tag: str) -> str | None:
        """The category a tag names (by name or alias, any case), or None."""
        key = normalize_tag(tag)
        for cat in self.categories:
            if key in {normalize_tag(x) for x in (cat.name, *cat.aliases)}:
                return cat.name
        return None

    def assign(self, obs: Observation) -> list[str]:
        """The names of the categories whose rules hold for this observation."""
        return [c.name for c in self.categories if c.matches(obs)]


def default_taxonomy_path() -> Path:
    """The seed taxonomy shipped with whetstone."""
    return Path(str(resources.files("whetstone.diagnose").joinpath("taxonomy.yaml")))


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """The taxonomy in ``path`` (default: the seed taxonomy); ConfigError names file and line.

    With ``extends: default`` the seed categories come first and a category of the same name
    in the file replaces the seed one.
    """
    file = Path(path) if path is not None else default_taxonomy_path()
    taxonomy = _read(file)
    if taxonomy.extends == "default":
        seed = _read(default_taxonomy_path())
        own = {c.name: c for c in taxonomy.categories}
        merged = [own.pop(c.name, c) for c in seed.categories] + list(own.values())
        try:
            taxonomy = Taxonomy(categories=merged, judge=taxonomy.judge)
        except ValidationError as e:
            raise ConfigError(f"{file}: {e.errors()[0]['msg']}") from e
    return taxonomy


def _read(file: Path) -> Taxonomy:
    where = str(file)
    if not file.is_file():
        raise ConfigError(f"{where}: taxonomy file not found (expected a YAML file)")
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the taxonomy file: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: invalid YAML: {getattr(e, 'problem', e)}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'categories:' (a list of categories)")
    try:
        return Taxonomy.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_error_line(e, node, where)) from e


def _error_line(e: ValidationError, root: yaml.Node | None, where: str) -> str:
    """One line naming the file, the YAML line and the field of the first validation error."""
    err = e.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "str")))]
    node = root
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
    line = node.start_mark.line + 1 if node is not None else 1
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {str(loc[-1])!r}"
    elif err["type"] == "missing":
        msg = "required but missing"
    return f"{where}:{line}: field '{field}': {msg}" if field else f"{where}:{line}: {msg}"


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if key.value == part:
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None
