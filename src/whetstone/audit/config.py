"""The audit configuration: which checks run and their thresholds (YAML, unknown keys refused).

Every field has a default, so ``AuditConfig()`` is a full audit. A YAML file holds any subset:

```yaml
columns: {text: sentence, label: label}
duplicates: {threshold: 0.8}
coverage: {enabled: false}
bias:
  terms: {gender: {female: [she, her, woman], male: [he, him, man]}}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from whetstone.errors import ConfigError

CHECKS = (
    "stats",
    "labels",
    "duplicates",
    "label_issues",
    "contamination",
    "coverage",
    "bias",
    "pii",
)
Check = Literal[
    "stats", "labels", "duplicates", "label_issues", "contamination", "coverage", "bias", "pii"
]
PII_KINDS = ("email", "phone", "card", "iban", "ip")
PIIKind = Literal["email", "phone", "card", "iban", "ip"]
DropReason = Literal[
    "exact_duplicates",
    "near_duplicates",
    "conflicts",
    "contaminated",
    "empty",
    "label_issues",
]


def _all_pii_kinds() -> list[PIIKind]:
    return ["email", "phone", "card", "iban", "ip"]


def _default_drop() -> list[DropReason]:
    return ["exact_duplicates", "near_duplicates", "conflicts", "contaminated", "empty"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnSpec(_Strict):
    """Which columns hold the text, the label and the id (auto-detected when left out).

    Prompt/response pairs: set ``prompt`` and ``response`` (or let ``prompt``/``response``,
    ``instruction``/``output``, ``question``/``answer`` or a chat ``messages`` list be found).
    """

    text: str | None = None
    label: str | None = None
    id: str | None = None
    prompt: str | None = None
    response: str | None = None
    # names for the columns of a header-less CSV/TSV file
    names: list[str] | None = None

    @field_validator("names")
    @classmethod
    def _unique_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        return names


class StatsConfig(_Strict):
    """Size, length, vocabulary and language statistics."""

    enabled: bool = True
    # records sampled for language identification (langdetect is slow)
    language_sample: int = Field(default=500, ge=0)
    # a record this many times longer (in characters) than the median is a length outlier
    long_factor: float = Field(default=20.0, gt=1)
    # ... and at least this long
    long_min_chars: int = Field(default=2000, ge=1)


class LabelsConfig(_Strict):
    """Label distribution, imbalance and the shift between training and eval labels."""

    enabled: bool = True
    # largest / smallest class count from which the imbalance is a finding
    imbalance_ratio: float = Field(default=3.0, gt=1)
    # classes with fewer records than this are flagged as rare
    min_class_count: int = Field(default=10, ge=1)
    # significance level of the chi-square test of train vs eval label distribution
    alpha: float = Field(default=0.05, gt=0, lt=1)


class DuplicatesConfig(_Strict):
    """Exact duplicates (normalized text) and near duplicates (MinHash LSH, verified)."""

    enabled: bool = True
    # near duplicates: true Jaccard similarity of character n-gram sets at least this
    threshold: float = Field(default=0.7, gt=0, lt=1)
    ngram: int = Field(default=5, ge=1)
    num_perm: int = Field(default=128, ge=8, le=1024)
    # texts shorter than this (normalized characters) take part in exact checks only
    min_chars: int = Field(default=20, ge=1)
    # weight of missed pairs against extra candidates when choosing LSH bands and rows: every
    # candidate is verified by its true Jaccard similarity, so misses cost more than extras
    recall_weight: float = Field(default=0.9, gt=0, lt=1)
    # an LSH bucket larger than this is paired with its first member only (not all pairs)
    max_bucket: int = Field(default=100, ge=2)
    seed: int = 1


class LabelIssuesConfig(_Strict):
    """Likely label errors: confident learning (cleanlab) on out-of-fold predictions."""

    enabled: bool = True
    # tfidf: word 1-2 grams; embeddings: the MiniLM sentence encoder; auto: embeddings for
    # fewer than embed_below labeled records (small data), else tfidf
    features: Literal["auto", "tfidf", "embeddings"] = "auto"
    embed_below: int = Field(default=5000, ge=0)
    folds: int = Field(default=5, ge=2)
    filter_by: Literal[
        "prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"
    ] = "prune_by_noise_rate"
    # classes with fewer records than this are left out of the classifier
    min_class_count: int = Field(default=10, ge=2)
    # fewer labeled records than this: the check is skipped (too little to learn from)
    min_records: int = Field(default=50, ge=10)
    # label quality below this is a high-severity finding
    high_severity_below: float = Field(default=0.1, ge=0, le=1)
    # inverse regularization strength of the logistic regression
    C: float = Field(default=4.0, gt=0)


class ContaminationConfig(_Strict):
    """Eval items whose word n-grams occur in the training data."""

    enabled: bool = True
    # n-gram length; items shorter than n use their whole length
    ngram: int = Field(default=13, ge=2)
    # items with fewer tokens than this are not checked
    min_tokens: int = Field(default=5, ge=1)
    # share of an item's tokens covered: at least this is contaminated, below clean_below is clean
    contaminated_at: float = Field(default=0.8, gt=0, le=1)
    clean_below: float = Field(default=0.2, gt=0, le=1)
    # training records kept as provenance per matched n-gram
    max_sources: int = Field(default=20, ge=1)


class CoverageConfig(_Strict):
    """Eval items far from any training example, and topics rare in training."""

    enabled: bool = True
    # sentence-transformers folder (default: the embedded MiniLM)
    encoder: str | None = None
    # training records embedded (a seeded random sample when there are more)
    max_train: int = Field(default=20000, ge=10)
    max_eval: int = Field(default=20000, ge=1)
    # an eval item is far when its distance to the nearest training example exceeds this
    # quantile of the training examples' own nearest-neighbour distances
    quantile: float = Field(default=0.99, gt=0, lt=1)
    # clusters for topics (default: from the data size)
    clusters: int | None = Field(default=None, ge=2)
    # a topic is a gap when its eval share is at least min_ratio times its training share
    min_ratio: float = Field(default=2.0, gt=1)
    min_eval_items: int = Field(default=5, ge=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)


class BiasConfig(_Strict):
    """Demographic terms: how often each group appears and what it is associated with."""

    enabled: bool = True
    # {category: {group: [terms]}}; default: the lists shipped in terms.yaml
    terms: dict[str, dict[str, list[str]]] | None = None
    # a group-label association needs at least this many records with both
    min_count: int = Field(default=10, ge=1)
    # ... and |nPMI| at least this
    min_npmi: float = Field(default=0.1, gt=0, le=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    # words reported per group (by nPMI, seen at least min_word_count times with the group)
    top_words: int = Field(default=10, ge=0)
    min_word_count: int = Field(default=5, ge=1)
    # a group is under-represented when the largest group of its category has this many times
    # its records
    representation_ratio: float = Field(default=4.0, gt=1)
    min_category_records: int = Field(default=30, ge=1)

    @field_validator("terms")
    @classmethod
    def _terms_are_words(
        cls, terms: dict[str, dict[str, list[str]]] | None
    ) -> dict[str, dict[str, list[str]]] | None:
        if terms is None:
            return None
        for category, groups in terms.items():
            for group, words in groups.items():
                for word in words:
                    if not word or not all(part.isalnum() for part in word.split("-")):
                        raise ValueError(
                            f"term {word!r} of {category}.{group}: expected one word "
                            "(letters and digits, hyphens allowed)"
                        )
        return terms


class PIIConfig(_Strict):
    """E-mail addresses, phone numbers, card numbers, IBANs and IP addresses."""

    enabled: bool = True
    kinds: list[PIIKind] = Field(default_factory=_all_pii_kinds)


class CleanConfig(_Strict):
    """What the cleaned copy leaves out (malformed rows always), and the per-example weights."""

    drop: list[DropReason] = Field(default_factory=_default_drop)
    # replace PII with a placeholder such as <EMAIL>
    redact_pii: bool = True
    # balanced: n / (classes * class count), computed on the cleaned data
    weights: Literal["balanced", "none"] = "balanced"


class AuditConfig(_Strict):
    """The whole audit configuration."""

    columns: ColumnSpec = Field(default_factory=ColumnSpec)
    stats: StatsConfig = Field(default_factory=StatsConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    duplicates: DuplicatesConfig = Field(default_factory=DuplicatesConfig)
    label_issues: LabelIssuesConfig = Field(default_factory=LabelIssuesConfig)
    contamination: ContaminationConfig = Field(default_factory=ContaminationConfig)
    coverage: CoverageConfig = Field(default_factory=CoverageConfig)
    bias: BiasConfig = Field(default_factory=BiasConfig)
    pii: PIIConfig = Field(default_factory=PIIConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    # records kept in memory for the model-based checks (label issues, coverage, language);
    # larger data is sampled (seeded reservoir) for those checks only
    sample_size: int = Field(default=100_000, ge=100)
    # a malformed record is an error (naming its line) instead of a finding
    strict: bool = False
    seed: int = 0

    def enabled(self, check: str) -> bool:
        """Whether the check named ``check`` runs."""
        section = getattr(self, check)
        return bool(section.enabled)

    def with_checks(
        self, only: list[str] | None = None, skip: list[str] | None = None
    ) -> AuditConfig:
        """A copy with only the checks in ``only`` (if given) and none of those in ``skip``."""
        for name in [*(only or []), *(skip or [])]:
            if name not in CHECKS:
                raise ConfigError(f"unknown check {name!r} (expected one of: {', '.join(CHECKS)})")
        update: dict[str, Any] = {}
        for name in CHECKS:
            on = getattr(self, name).enabled
            if only is not None:
                on = name in only
            if skip and name in skip:
                on = False
            update[name] = getattr(self, name).model_copy(update={"enabled": on})
        return self.model_copy(update=update)


def load_config(path: str | Path) -> AuditConfig:
    """An AuditConfig from a YAML file; errors name the file, the line and the field."""
    where = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{where}: audit config file not found")
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read the audit config: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: invalid YAML: {getattr(e, 'problem', e)}") from e
    if raw is None:
        return AuditConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}:1: expected a mapping of audit settings")
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_error_line(where, e, node)) from e


def _error_line(where: str, e: ValidationError, root: yaml.Node | None) -> str:
    """One line for the first validation error: file, line, dotted field, what was expected."""
    err = e.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    node = root
    for part in loc if err["type"] != "missing" else loc[:-1]:
        child = _child(node, part, key=err["type"] == "extra_forbidden" and part == loc[-1])
        if child is None:
            break
        node = child
    line = node.start_mark.line + 1 if node is not None else 1
    field = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return f"{where}:{line}: unknown key '{field}'"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}:{line}: field '{field}': {msg}"


def _child(node: yaml.Node | None, part: str, key: bool = False) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == part:
                return k if key else v
    if isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
        child: yaml.Node = node.value[int(part)]
        return child
    return None
