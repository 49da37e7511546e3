"""The records of ``audit.json``: one section per check, findings and recommendations.

Every finding names the training records (``record_ids``) and, where it concerns an eval set,
the eval items (``eval_ids``) involved, with a severity and a suggested action.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from whetstone.audit.config import AuditConfig
from whetstone.records import MetricValue

Severity = Literal["info", "low", "medium", "high"]
Action = Literal["drop", "relabel", "review", "reweight", "redact", "add_data", "fix"]
FindingKind = Literal[
    "empty",
    "malformed",
    "duplicate_id",
    "length_outlier",
    "language",
    "missing_label",
    "label_variants",
    "imbalance",
    "rare_class",
    "label_shift",
    "exact_duplicate",
    "near_duplicate",
    "label_conflict",
    "label_issue",
    "contamination",
    "coverage_gap",
    "gap_topic",
    "representation",
    "bias_association",
    "pii",
]
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "info": 3}


class DatasetInfo(BaseModel):
    """One audited file: where it is, how it was read and its content hash."""

    role: Literal["train", "eval"]
    name: str
    path: str
    format: str
    sha256: str
    n_records: int
    columns: list[str]
    mode: Literal["text", "pair", "messages"]
    text_fields: list[str]
    label_column: str | None = None
    id_column: str | None = None


class LengthStats(BaseModel):
    """Summary of a length distribution."""

    mean: float
    median: float
    p5: float
    p95: float
    min: float
    max: float


class Histogram(BaseModel):
    """Counts per bin; ``edges`` has one more entry than ``counts``."""

    edges: list[float]
    counts: list[int]


class MalformedRecord(BaseModel):
    """A row that could not be read as a record."""

    id: str
    line: int
    error: str


class StatsSection(BaseModel):
    """Size, lengths, vocabulary, language mix, empty and malformed records."""

    n_rows: int
    n_records: int
    n_empty: int
    n_malformed: int
    n_duplicate_ids: int = 0
    chars: LengthStats | None = None
    tokens: LengthStats | None = None
    token_histogram: Histogram | None = None
    fields: dict[str, LengthStats] = Field(default_factory=dict)
    vocabulary_size: int = 0
    type_token_ratio: float = 0.0
    top_tokens: list[tuple[str, int]] = Field(default_factory=list)
    languages: dict[str, float] = Field(default_factory=dict)
    language_sample: int = 0
    empty_ids: list[str] = Field(default_factory=list)
    malformed: list[MalformedRecord] = Field(default_factory=list)


class ClassCount(BaseModel):
    """One class: its count, share and balanced weight."""

    label: str
    count: int
    share: float
    weight: float


class LabelShift(BaseModel):
    """Train vs eval label distribution: total variation distance and a chi-square test of
    homogeneity (train and eval counts) with a permutation p-value."""

    eval_name: str
    n_eval: int
    tvd: float
    chi2: float
    p_value: float
    method: str = "permutation_chi2_homogeneity"
    eval_shares: dict[str, float]
    unseen_labels: list[str] = Field(default_factory=list)


class LabelSection(BaseModel):
    """The label distribution with imbalance measures and remedies."""

    column: str
    n_labeled: int
    n_missing: int
    classes: list[ClassCount]
    imbalance_ratio: float
    normalized_entropy: float
    class_weights: dict[str, float]
    # per class, the count after random oversampling to the largest class
    oversample_to: dict[str, int]
    variants: list[list[str]] = Field(default_factory=list)
    missing_ids: list[str] = Field(default_factory=list)
    shifts: list[LabelShift] = Field(default_factory=list)


class DuplicateGroup(BaseModel):
    """Records with the same (normalized) text, or near-identical ones; the first is kept."""

    kind: Literal["exact", "near"]
    ids: list[str]
    labels: list[str | None]
    min_jaccard: float = 1.0
    preview: str = ""


class NearPair(BaseModel):
    """Two records whose character n-gram sets have Jaccard similarity >= the threshold."""

    a: str
    b: str
    jaccard: float


class LSHInfo(BaseModel):
    """How near duplicates were searched."""

    threshold: float
    num_perm: int
    bands: int
    rows: int
    ngram: int
    candidates: int
    verified: int


class DuplicateSection(BaseModel):
    """Exact and near duplicates, and duplicates whose labels disagree."""

    n_exact_groups: int
    n_exact_extra: int
    n_near_pairs: int
    n_near_groups: int
    exact_groups: list[DuplicateGroup]
    near_groups: list[DuplicateGroup]
    near_pairs: list[NearPair]
    conflicts: list[DuplicateGroup]
    lsh: LSHInfo
    # what deduplication drops: every exact copy but the first, and near duplicates with the
    # same label as a record that is kept
    drop_ids: list[str] = Field(default_factory=list)


class LabelIssue(BaseModel):
    """A record whose given label disagrees with out-of-fold predictions."""

    id: str
    given: str
    suggested: str
    quality: float
    preview: str = ""


class LabelIssueSection(BaseModel):
    """Confident learning (cleanlab) on out-of-fold predicted probabilities."""

    features: str
    folds: int
    n_records: int
    sampled: bool
    classes: list[str]
    oof_accuracy: MetricValue
    majority_baseline: float
    n_issues: int
    issues: list[LabelIssue]
    per_class: dict[str, int]
    skipped_classes: list[str] = Field(default_factory=list)


class ContaminatedItem(BaseModel):
    """An eval item with n-grams found in the training data."""

    eval_id: str
    coverage: float
    n_tokens: int
    ngram: int
    train_ids: list[str]
    preview: str = ""


class GroupScore(BaseModel):
    """The metric on one group of eval items, with its 95% interval (None with ``too_few``
    and a ``note`` when the group is too small for an honest one)."""

    n: int
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    method: str = ""
    too_few: bool = False
    note: str | None = None


class ScoreSplit(BaseModel):
    """The score on clean vs contaminated items, and the difference with its interval."""

    run_id: str
    task: str
    metric: str
    n_matched: int
    clean: GroupScore
    partial: GroupScore
    contaminated: GroupScore
    diff: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    """Two-sided permutation test of contaminated vs clean."""
    too_few: bool = False
    """The difference's interval is withheld: a group is too small (``note`` says which)."""
    note: str | None = None


class ContaminationSection(BaseModel):
    """Training/eval n-gram overlap for one eval set."""

    eval_name: str
    ngram: int
    n_items: int
    n_checked: int
    n_contaminated: int
    n_partial: int
    n_any: int
    share_contaminated: float
    share_any: float
    items: list[ContaminatedItem]
    train_ids: list[str]
    score: ScoreSplit | None = None


class FarItem(BaseModel):
    """An eval item farther from the training data than the training data is from itself."""

    eval_id: str
    distance: float
    nearest_train_id: str
    preview: str = ""


class Topic(BaseModel):
    """A cluster of eval and training texts with its share in each."""

    cluster: int
    terms: list[str]
    n_eval: int
    n_train: int
    eval_share: float
    train_share: float
    ratio: float
    p_value: float
    q_value: float
    gap: bool
    eval_ids: list[str] = Field(default_factory=list)


class CoverageSection(BaseModel):
    """Embedding distance of eval items to the nearest training example, and topic gaps."""

    eval_name: str
    encoder: str
    n_train: int
    n_eval: int
    sampled_train: bool
    threshold: float
    quantile: float
    eval_distance: LengthStats
    train_distance: LengthStats
    far_items: list[FarItem]
    topics: list[Topic]


class GroupCount(BaseModel):
    """How many records mention a demographic group."""

    category: str
    group: str
    n_records: int
    share: float
    share_in_category: float


class Association(BaseModel):
    """Normalized PMI between a group's presence and a label (or a word), over records."""

    category: str
    group: str
    target: str
    npmi: float
    count: int
    p_value: float | None = None
    q_value: float | None = None


class BiasSection(BaseModel):
    """Frequencies of demographic groups and their strongest associations."""

    n_records: int
    categories: dict[str, dict[str, list[str]]]
    groups: list[GroupCount]
    label_associations: list[Association]
    word_associations: list[Association]


class PIIMatch(BaseModel):
    """One personal data string (masked) in one record."""

    id: str
    kind: str
    masked: str
    start: int
    end: int


class PIISection(BaseModel):
    """Personal data found in the training records."""

    counts: dict[str, int]
    n_records: int
    matches: list[PIIMatch]


class Finding(BaseModel):
    """One problem: what it is, which records, how bad, and what to do."""

    id: str
    kind: FindingKind
    severity: Severity
    title: str
    record_ids: list[str] = Field(default_factory=list)
    n_records: int = 0
    eval_set: str | None = None
    eval_ids: list[str] = Field(default_factory=list)
    action: Action
    suggestion: str
    details: dict[str, Any] = Field(default_factory=dict)


class Recommendation(BaseModel):
    """A change to the training data, tied to the findings behind it."""

    action: Action
    title: str
    detail: str
    n: int
    record_ids: list[str] = Field(default_factory=list)
    eval_ids: list[str] = Field(default_factory=list)
    finding_kinds: list[str]


class Outputs(BaseModel):
    """Files written next to audit.json."""

    audit_json: str | None = None
    html: str | None = None
    cleaned: str | None = None
    weights: str | None = None
    removed: str | None = None
    n_kept: int | None = None
    n_removed: int | None = None


class Audit(BaseModel):
    """Everything ``whetstone audit`` found: the content of audit.json."""

    version: int = 1
    audit_id: str
    created_at: datetime
    train: DatasetInfo
    evals: list[DatasetInfo] = Field(default_factory=list)
    config: AuditConfig
    stats: StatsSection | None = None
    labels: LabelSection | None = None
    duplicates: DuplicateSection | None = None
    label_issues: LabelIssueSection | None = None
    contamination: list[ContaminationSection] = Field(default_factory=list)
    coverage: list[CoverageSection] = Field(default_factory=list)
    bias: BiasSection | None = None
    pii: PIISection | None = None
    findings: list[Finding] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    outputs: Outputs = Field(default_factory=Outputs)

    def findings_of(self, kind: str) -> list[Finding]:
        """The findings of one kind."""
        return [f for f in self.findings if f.kind == kind]

    def counts(self) -> dict[str, int]:
        """Number of findings per kind."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out
