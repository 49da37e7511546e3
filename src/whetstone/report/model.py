"""What a report shows, gathered from the store before any HTML or Markdown is written."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Cell:
    """A metric value with its 95% interval (empty when not measured)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    n: int | None = None
    # why there is no interval, or what to know about it (e.g. too few items)
    note: str | None = None
    # with sampled repeats: the share of the interval's variance that is sampling, and K
    sampling: tuple[float, int] | None = None


@dataclass
class MetricTable:
    """One task: a row per metric, a cell per model."""

    task: str
    kind: str
    models: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class Figure:
    """An inline SVG plot with a caption."""

    title: str
    svg: str
    caption: str = ""


@dataclass
class ComparisonRow:
    """One paired difference of a candidate against the baseline."""

    task: str
    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p_value: float
    test: str
    n: int
    verdict: str  # "better", "worse" or "same" (not significant)
    mdd: float | None = None  # the difference found with 80% power


@dataclass
class CandidateView:
    """A candidate's paired comparison with the baseline, its plot and its selection verdict."""

    name: str
    origin: str
    model: str
    rows: list[ComparisonRow]
    figure: Figure | None
    eligible: bool | None = None
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    costs: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass
class Example:
    """One item shown as an example: what was asked, the gold answer, what each model said."""

    task: str
    id: str
    prompt: str
    gold: str
    answers: list[tuple[str, str]]
    note: str = ""


@dataclass
class StepSection:
    """A section rendered by another step's own `render_html_section`."""

    id: str
    title: str
    html: str
    source: str = ""


@dataclass
class Report:
    """Everything a report shows; the HTML and Markdown renderers only format it."""

    kind: str  # "pipeline" or "run"
    title: str
    subtitle: str
    facts: list[tuple[str, str]]
    headline: str
    verdict: str  # "pass", "fail", "inconclusive" or ""
    tables: list[MetricTable]
    calibration: list[Figure]
    confusion: list[Figure]
    candidates: list[CandidateView]
    tradeoff: Figure | None
    gate_rows: list[dict[str, str]]
    gate_message: str
    steps: dict[str, list[StepSection]]
    examples: list[Example]
    stages: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)
    # the level of the gate's pass intervals and its Bonferroni divisor
    gate_level: str = "95%"
    gate_tests: int = 0
    # one row per model for the summaries: the rule's, the gate's and the cost metrics
    overview_columns: list[str] = field(default_factory=list)
    overview: list[OverviewRow] = field(default_factory=list)


@dataclass
class OverviewRow:
    """A model in the overview: each headline metric as text (value, and B - A for candidates)."""

    name: str
    origin: str
    selected: bool
    cells: list[str]
    error: str | None = None
