"""The task file contract (see DESIGN.md): one pydantic model per YAML task.

Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from whetstone.errors import ConfigError
from whetstone.metrics import canonical_name, check_metric, default_metrics

TaskKind = Literal["perplexity", "multiple_choice", "classification", "generation"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where a task's items come from."""

    # .jsonl .json .csv .tsv .parquet .txt, relative to the YAML file's folder
    path: str
    # names for the columns of a header-less csv/tsv
    columns: list[str] | None = None
    # column holding a stable item id (default: the 0-based row number)
    id: str | None = None
    # use only the first `limit` rows
    limit: int | None = Field(default=None, ge=1)
    # .txt files only: split the text into documents of about this many characters, each cut at
    # the blank line (else the line end) nearest to that length; the documents together are the
    # whole text. Default (None): one document per blank-line-separated paragraph.
    chunk_chars: int | None = Field(default=None, ge=1)


class WindowSpec(_Strict):
    """Rolling windows for perplexity: `stride` < `max_length` makes them overlap."""

    max_length: int = Field(default=1024, ge=2)
    stride: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _stride_fits(self) -> WindowSpec:
        if self.stride is not None and self.stride > self.max_length:
            raise ValueError("stride must be at most max_length")
        return self

    @property
    def effective_stride(self) -> int:
        """The stride, defaulting to max_length (disjoint windows, as lm-evaluation-harness)."""
        return self.stride or self.max_length


class FewshotSpec(_Strict):
    """Examples prepended to every prompt, drawn deterministically from `path` with `seed`."""

    path: str | None = None
    k: int = Field(default=0, ge=0)
    seed: int = 0
    separator: str = "\n\n"


class TaskConfig(_Strict):
    """One evaluation task as written in YAML."""

    name: str
    kind: TaskKind
    data: DataSpec
    description: str = ""
    prompt: str = "{text}"
    # multiple_choice
    # column holding the list of choice texts
    choices: str | None = None
    choice_prefix: str = " "
    # column holding the gold answer: an int index into `choices` (or a string of digits), or,
    # when `answer_labels` is set, a label looked up in that item's labels (ARC: "A".."D" or
    # "1".."4"); see whetstone.tasks.loading.gold_index
    answer: str | None = None
    # optional column holding the labels aligned with `choices`
    answer_labels: str | None = None
    # perplexity
    text: str = "text"
    window: WindowSpec = WindowSpec()
    # classification
    # column holding the gold label; its value (as a string) must be a key of `labels`
    label: str | None = None
    # gold value -> verbalized label; YAML int keys (0: negative) are read as strings
    labels: dict[str, str] | None = None
    classify_by: Literal["loglikelihood", "generation"] = "loglikelihood"
    # generation (and generated classification)
    target: str | None = None
    max_new_tokens: int = Field(default=32, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["\n\n"])
    temperature: float = Field(default=0.0, ge=0.0)
    fewshot: FewshotSpec | None = None
    fewshot_prompt: str | None = None
    metrics: list[str] | None = None
    # classification with two labels: the gold value of the positive class, for the
    # positive-class precision, recall and F1 (precision_binary, recall_binary, f1_binary)
    positive: str | None = None
    # the folder of the YAML file; relative data paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_as_strings(cls, value: object) -> object:
        # YAML reads `0: negative` with an int key; data values are compared as strings
        if isinstance(value, dict):
            return {str(k) if isinstance(k, int | float) else k: v for k, v in value.items()}
        return value

    @field_validator("positive", mode="before")
    @classmethod
    def _positive_as_string(cls, value: object) -> object:
        # `positive: 1` names the label key 1, which YAML reads as an int
        return (
            str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        )

    @field_validator("labels")
    @classmethod
    def _distinct_verbalizations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # predictions are compared by their verbalized text, so two labels cannot share one
        seen: dict[str, str] = {}
        for key, text in (value or {}).items():
            if text in seen:
                raise ValueError(
                    f"labels '{seen[text]}' and '{key}' are both verbalized as {text!r}; "
                    "expected a distinct text per label"
                )
            seen[text] = key
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskConfig:
        needed = {
            "multiple_choice": ["choices", "answer"],
            "classification": ["label", "labels"],
            "generation": ["target"],
            "perplexity": [],
        }[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} task needs the field(s): {', '.join(missing)}")
        self._check_metrics()
        self._check_positive()
        return self

    def _check_metrics(self) -> None:
        """Each listed metric is one the registry knows and this kind of task reports."""
        for name in self.metrics or []:
            try:
                canonical = check_metric(name, self.kind)
            except ConfigError as err:
                raise ValueError(f"field 'metrics': {err}") from err
            if canonical.endswith("_binary") and self.positive is None:
                raise ValueError(
                    f"field 'metrics': {name!r} needs 'positive' (the gold value of the class)"
                )

    def _check_positive(self) -> None:
        """``positive`` only on a two-label classification task, naming one of its labels."""
        if self.positive is None:
            return
        if self.kind != "classification":
            raise ValueError(
                f"field 'positive' is for classification tasks (this is a {self.kind} task)"
            )
        labels = self.labels or {}
        if len(labels) != 2:
            raise ValueError(
                f"field 'positive' needs exactly two labels (this task has {len(labels)}): "
                "precision, recall and F1 of one class are for binary tasks"
            )
        if self.positive not in labels:
            raise ValueError(
                f"field 'positive': {self.positive!r} is not a label (expected {', '.join(labels)})"
            )

    @property
    def metric_names(self) -> list[str]:
        """The metrics to report: the file's list (aliases resolved) or the kind's defaults."""
        names = [canonical_name(m) for m in self.metrics] if self.metrics else []
        names = names or default_metrics(self.kind)
        if self.positive is not None and not self.metrics:
            names += [f"{score}_binary" for score in ("precision", "recall", "f1")]
        return names

    def resolve(self, path: str) -> Path:
        """A data path from the file, relative to the YAML's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p
