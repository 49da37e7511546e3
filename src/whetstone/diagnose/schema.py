"""Pydantic records of error analysis: what it reads and what ``diagnosis.json`` holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["sample", "feedback"]


class Observation(BaseModel):
    """One judged model answer: an evaluation sample or a feedback judgment, failed or not.

    Slices compare the failure rate inside and outside a group of observations, so successes
    are kept too; categories and clusters look at the failures only.
    """

    model_config = ConfigDict(extra="forbid")

    uid: str  # unique within a diagnosis: "run:task:item" or "campaign:item:participant:model"
    source: Source
    origin: str  # the run id or the feedback campaign
    task: str  # task name, or "feedback:<mode>"
    kind: str  # task kind (classification, ...) or feedback mode (review, chat, arena)
    item_id: str
    prompt: str = ""
    text: str = ""  # the item's own text: the prompt without the part every item shares
    output: str = ""  # the model's text (generated text, chosen choice or label)
    generated: bool = False  # the output was written by the model (not picked from options)
    reference: str | None = None  # gold answer or label as text, or the human correction
    references: list[str] = Field(default_factory=list)  # every reference, when several
    failed: bool = False
    score: float | None = None  # the per-item score that decided ``failed`` (1 = right)
    metrics: dict[str, float] = Field(default_factory=dict)
    columns: dict[str, Any] = Field(default_factory=dict)  # the data's own item columns
    comment: str | None = None
    tags: list[str] = Field(default_factory=list)  # human error tags (feedback)
    detectors: list[str] = Field(default_factory=list)  # names of detectors that fired
    gold_label: str | None = None  # classification / multiple choice: gold label text
    predicted_label: str | None = None  # classification / multiple choice: predicted label text


class Example(BaseModel):
    """A failure shown as an example: where it comes from and what was said."""

    uid: str
    task: str
    item_id: str
    prompt: str
    output: str
    reference: str | None = None
    comment: str | None = None


class Share(BaseModel):
    """A proportion with its 95% Wilson interval (over items when an item has several
    observations: its runs or its judges).

    ``too_few`` marks a share with nothing or one item behind it: the interval is then the
    whole range [0, 1] (no data) or the one-item Wilson interval, and ``note`` says why.
    """

    value: float
    ci_low: float
    ci_high: float
    method: str = "wilson"
    too_few: bool = False
    note: str | None = None


class CategoryResult(BaseModel):
    """One error category: how many failures it holds and their share of all failures."""

    name: str
    description: str = ""
    count: int  # failures with this category (by a rule or by the judge)
    share: Share  # of all failures; a failure can have several categories
    by_rules: int = 0
    by_judge: int = 0
    examples: list[Example] = Field(default_factory=list)
    by_task: dict[str, int] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)  # uids of its failures


class DetectorResult(BaseModel):
    """One built-in detector: how often it fired among failures and among successes."""

    name: str
    description: str
    failures: int  # failures it fired on
    applicable: int  # failures it could judge (e.g. those with a reference)
    share: Share  # of all failures
    successes: int  # passing answers it fired on (many would make it a poor failure signal)
    successes_checked: int  # passing answers it judged (a seeded sample when there are many)
    examples: list[Example] = Field(default_factory=list)


class ClusterResult(BaseModel):
    """A discovered category: failures that sit close in embedding space, named by their terms."""

    id: int
    name: str
    terms: list[str]
    count: int
    share: Share
    examples: list[Example] = Field(default_factory=list)  # closest to the cluster centre
    top_tasks: dict[str, int] = Field(default_factory=dict)
    top_categories: dict[str, int] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)  # uids of its failures


class ClusterSearch(BaseModel):
    """How the failures were clustered: k, and whether the silhouette or the size chose it."""

    k: int
    by: str  # "silhouette" (clear structure) or "size" (sqrt(n/2), no clear structure)
    silhouette: float


class ConfusedPair(BaseModel):
    """A classification (or multiple-choice) confusion: gold label taken for another label."""

    task: str
    gold: str
    predicted: str
    count: int
    share_of_gold: Share  # of the items with this gold label
    examples: list[Example] = Field(default_factory=list)


class SliceResult(BaseModel):
    """A group of observations whose failure rate is higher than the rest of the data."""

    description: str
    conditions: list[dict[str, Any]]  # [{"attribute": ..., "value": ...}], one or two
    size: int
    failures: int
    error_rate: Share
    rest_size: int
    rest_error_rate: float
    metric: str = "error_rate"
    metric_value: float  # the slice's error rate (repeated for readers that look for it)
    rest_value: float
    effect_size: float  # Cohen's h between the slice's and the rest's error rates
    risk_difference: float
    odds_ratio: float | None
    p_value: float  # one-sided Fisher's exact test, slice vs rest (Rao-Scott counts if deff > 1)
    p_adjusted: float  # Benjamini-Hochberg over every slice tested
    design_effect: float = 1.0  # of the items' clustering; Fisher's counts divided by it
    significant: bool
    examples: list[Example] = Field(default_factory=list)


class SliceSearch(BaseModel):
    """How slices were searched: what was tested and at which false discovery rate."""

    attributes: dict[str, list[str]]  # attribute -> the values it takes (as tested)
    min_size: int
    fdr: float
    tested: int
    significant: int
    clustered: bool = False  # items had several observations: Rao-Scott-adjusted Fisher tests


class JudgeAgreement(BaseModel):
    """How the LLM judge's categories agree with humans' error tags on the same failures."""

    n: int
    accuracy: float
    accuracy_ci: Share
    cohen_kappa: float | None = None  # on the failures with exactly one human category
    kappa_ci_low: float | None = None  # None below ten items (see kappa_note)
    kappa_ci_high: float | None = None
    kappa_note: str | None = None  # why the kappa interval is withheld
    per_category: dict[str, dict[str, float]] = Field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = Field(default_factory=dict)  # human -> judge -> n


class JudgeSummary(BaseModel):
    """Which model judged the failures and how many it categorized."""

    model: str
    method: str
    judged: int
    assigned: int
    agreement: JudgeAgreement | None = None


class InputSummary(BaseModel):
    """What the diagnosis read: runs, campaigns, tasks and counts."""

    runs: list[str] = Field(default_factory=list)
    campaigns: list[str] = Field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> kind, n, failures
    observations: int
    failures: int
    failure_rate: Share


class Diagnosis(BaseModel):
    """The content of ``diagnosis.json``: error categories, weak slices and how they were found."""

    key: str
    created_at: datetime
    inputs: InputSummary
    taxonomy: list[str]
    categories: list[CategoryResult]
    detectors: list[DetectorResult]
    clusters: list[ClusterResult]
    cluster_search: ClusterSearch | None = None
    confused_pairs: list[ConfusedPair]
    slices: list[SliceResult]
    slice_search: SliceSearch | None = None
    judge: JudgeSummary | None = None
    uncategorized: int = 0
    notes: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
