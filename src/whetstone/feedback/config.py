"""Campaign configuration: a YAML file (or the web form) validated by pydantic models.

```yaml
name: support-arena
mode: arena                     # review | chat | arena
models:
  - {spec: default, name: gemma}
  - {spec: openai:qwen, base_url: http://127.0.0.1:8000/v1, name: qwen}
questions: [comment, tags]      # thumbs | likert | comment | correction | tags
prompts: {jsonl: prompts.jsonl, limit: 40}     # or {task: suite.yaml, task_name: ...}
overlap: 2                      # participants per unit, so that agreement can be measured
generation: {max_new_tokens: 96}
```

Unknown keys are errors naming the file, the line and the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from whetstone.errors import ConfigError

Mode = Literal["review", "chat", "arena"]
QuestionType = Literal["thumbs", "likert", "comment", "correction", "tags"]
QUESTION_TYPES: tuple[str, ...] = ("thumbs", "likert", "comment", "correction", "tags")

DEFAULT_LABELS = {
    "thumbs": "Is this answer good?",
    "likert": "Overall quality (1 = very poor, 5 = excellent)",
    "comment": "Comment",
    "correction": "A better answer",
    "tags": "What is wrong with it?",
}
DEFAULT_QUESTIONS: dict[str, list[str]] = {
    "review": ["thumbs", "likert", "comment", "tags"],
    "chat": ["thumbs", "likert", "comment"],
    "arena": ["comment"],
}
MAX_TEXT_CHARS = 20_000
"""Longest comment or correction a participant may submit."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    """A model to collect feedback on: any whetstone model spec, with a display name."""

    spec: str = Field(min_length=1)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    device: str = "auto"
    dtype: str = "auto"

    @property
    def label(self) -> str:
        """The name under which the model's answers are stored and ranked (never shown blind)."""
        return self.name or self.spec


class GenerationSettings(_Strict):
    """How answers are generated (the same for every model of the campaign)."""

    max_new_tokens: int = Field(default=128, ge=1, le=8192)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int = 0
    chat_template: bool = False
    """Review and arena: send each prompt as a user message through the model's chat template."""
    system_prompt: str | None = None
    """Chat: a system message before the conversation."""


class ChatSettings(_Strict):
    """Limits of chat conversations."""

    max_turns: int = Field(default=10, ge=1, le=100)
    max_message_chars: int = Field(default=4000, ge=1, le=MAX_TEXT_CHARS)


class Question(_Strict):
    """One question asked about each answer; thumbs and likert are required by default."""

    type: QuestionType
    label: str | None = Field(default=None, max_length=300)
    required: bool | None = None

    @property
    def text(self) -> str:
        """The question as shown to participants."""
        return self.label or DEFAULT_LABELS[self.type]

    @property
    def is_required(self) -> bool:
        """Whether an answer must be given before the rating is accepted."""
        return self.required if self.required is not None else self.type in ("thumbs", "likert")


class PromptItem(_Strict):
    """One prompt given inline (or read from an uploaded JSONL file)."""

    id: str | None = None
    prompt: str = Field(min_length=1)
    reference: str | None = None


class PromptSource(_Strict):
    """Where the prompts come from: a task file's items, a JSONL file, or an inline list."""

    task: str | None = None
    task_name: str | None = None
    jsonl: str | None = None
    items: list[PromptItem] | None = None
    prompt_field: str = "prompt"
    reference_field: str | None = "reference"
    id_field: str | None = "id"
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> PromptSource:
        given = [k for k in ("task", "jsonl", "items") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'task' (a task or suite file), 'jsonl' (a JSONL file) "
                f"or 'items' (a list), got {', '.join(given) or 'none'}"
            )
        if self.task_name is not None and self.task is None:
            raise ValueError("'task_name' picks a task of a suite: it needs 'task'")
        return self


class CampaignConfig(_Strict):
    """Everything a campaign needs: mode, models, questions, prompts, overlap, generation."""

    name: str = Field(min_length=1, max_length=200)
    mode: Mode
    description: str = Field(default="", max_length=5000)
    models: list[ModelEntry] = Field(min_length=1, max_length=20)
    questions: list[Question] = Field(default_factory=list)
    prompts: PromptSource | None = None
    overlap: int = Field(default=2, ge=1, le=50)
    per_participant: int | None = Field(default=None, ge=1)
    pairs: Literal["rotate", "all"] = "rotate"
    show_reference: bool = False
    taxonomy: str | None = None
    categories: list[str] | None = None
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    seed: int = 0

    @field_validator("questions", mode="before")
    @classmethod
    def _question_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"type": q} if isinstance(q, str) else q for q in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CampaignConfig:
        labels = [m.label for m in self.models]
        twice = sorted({x for x in labels if labels.count(x) > 1})
        if twice:
            raise ValueError(f"model names must be unique; {', '.join(twice)} is used twice")
        if self.mode == "arena" and len(self.models) < 2:
            raise ValueError("arena needs at least two models")
        if self.mode != "chat" and self.prompts is None:
            raise ValueError(f"mode {self.mode!r} needs 'prompts' (a task file, JSONL or items)")
        types = [q.type for q in self.questions]
        if len(set(types)) != len(types):
            raise ValueError("each question type may be asked once")
        if not self.questions:
            self.questions = [Question(type=t) for t in DEFAULT_QUESTIONS[self.mode]]
        return self

    def question(self, kind: str) -> Question | None:
        """The question of this type, if the campaign asks it."""
        return next((q for q in self.questions if q.type == kind), None)

    def model(self, label: str) -> ModelEntry:
        """The model entry with this label."""
        return next(m for m in self.models if m.label == label)


def parse_config(
    raw: Any, where: str = "campaign", root: yaml.Node | None = None
) -> CampaignConfig:
    """A validated CampaignConfig; ConfigError names the place, the line and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of campaign fields")
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(error_line(e, root, where)) from e


def load_config(path: str | Path) -> CampaignConfig:
    """The campaign file at ``path``; relative paths inside it stay relative to its folder."""
    file = Path(path)
    where = str(file)
    if not file.is_file():
        raise ConfigError(f"{where}: campaign file not found (expected a YAML file)")
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the campaign file: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: invalid YAML: {getattr(e, 'problem', e)}") from e
    return parse_config(raw, where, node)


def error_line(e: ValidationError, root: yaml.Node | None, where: str) -> str:
    """One line naming the file, the YAML line and the field of the first validation error."""
    err = e.errors()[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    node = root
    for part in loc:
        child = _child(node, part, key=part == loc[-1] and err["type"] == "extra_forbidden")
        if child is None:
            break
        node = child
    line = f":{node.start_mark.line + 1}" if node is not None else ""
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), known, 1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        msg = f"unknown key {str(loc[-1])!r} ({hint}expected one of: {', '.join(known)})"
    elif err["type"] == "missing":
        msg = "required but missing"
    elif "input" in err and isinstance(err["input"], str | int | float):
        msg = f"{msg}, got {err['input']!r}"
    return f"{where}{line}: field '{field}': {msg}" if field else f"{where}{line}: {msg}"


def _child(node: yaml.Node | None, part: str | int, key: bool = False) -> yaml.Node | None:
    """The YAML node under ``node`` at a mapping key (its key node if ``key``) or list index."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for k, v in node.value:
            if k.value == part:
                return k if key else v
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _model_at(loc: list[str | int]) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (for listing the known keys)."""
    model: type[BaseModel] | None = CampaignConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _unwrap(annotation)
    return model


def _unwrap(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[X]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _unwrap(arg)
        if found is not None:
            return found
    return None
