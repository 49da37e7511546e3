"""The pipeline file: one YAML mapping validated by these pydantic models (unknown keys refused).

A pipeline names the model, the evaluation tasks, what to learn about the model (feedback
campaign, error analysis, data audit), the optimizations to try, how to pick the best candidate
and which metrics the regression gate guards. Paths are relative to the pipeline file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from whetstone.evaluate.gate import Margin, margin_for, unmatched_margins
from whetstone.metrics import canonical_name
from whetstone.pipeline.metrics import check_metric_name

OptimizeMethod = Literal["finetune", "tune", "distill", "quantize"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelOptions(_Strict):
    """How to load a model (the options of `whetstone evaluate`)."""

    device: str = "auto"
    dtype: str = "auto"
    batch_size: int | None = Field(default=None, ge=1)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    max_length: int | None = Field(default=None, ge=2)


class CandidateModel(_Strict):
    """An existing model to compare with the baseline (a checkpoint, a GGUF file, a server)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: str
    model_options: ModelOptions = ModelOptions()


class FeedbackStep(_Strict):
    """Judgments of people collected in a feedback campaign of the studio."""

    campaign: str
    # the database holding the campaign (default: the pipeline's own)
    db: str | None = None


class DiagnoseStep(_Strict):
    """Error analysis of the baseline run (and the campaign's judgments): error categories,
    clusters of failures and weak slices."""

    # an error taxonomy YAML file (default: the seed categories)
    taxonomy: str | None = None
    # whetstone.diagnose.DiagnoseOptions (fail_when, clusters, min_slice_size, ...)
    options: dict[str, Any] = Field(default_factory=dict)


class AuditStep(_Strict):
    """A training data file to audit (imbalance, duplicates, label errors, contamination of the
    evaluation data, coverage, bias, personal data)."""

    name: str | None = None
    data: str
    # the tasks whose data is checked for contamination and coverage (default: all)
    against: list[str] | None = None
    # compare the baseline's per-item metric on clean and contaminated items of this task
    # (an alias is resolved through the metric registry)
    task: str | None = None
    metric: Annotated[str, AfterValidator(canonical_name)] | None = None
    # whetstone.audit.AuditConfig (columns, duplicates, contamination, ...), checked by it
    options: dict[str, Any] = Field(default_factory=dict)


class Optimization(_Strict):
    """One optimization to try; each produces a candidate model named `name`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    method: OptimizeMethod
    # the method's own configuration, validated by whetstone.optimize (its keys, its errors);
    # output_dir and db default to the pipeline's, the starting model to `start_from`
    config: dict[str, Any] = Field(default_factory=dict)
    # start from this candidate's model (an earlier optimization or a listed candidate)
    # instead of the pipeline's model, e.g. quantize what distillation made
    start_from: str | None = None
    # evaluate the candidate on these tasks only (default: every task it can answer)
    tasks: list[str] | None = None


class LatencySpec(_Strict):
    """How the per-item latency of each candidate is measured (cache off, one item at a time)."""

    # the task whose items are timed (default: the objective's task, else the first task)
    task: str | None = None
    items: int = Field(default=8, ge=1)
    warmup: int = Field(default=1, ge=0)


class Constraint(_Strict):
    """A bound a candidate must meet: absolute (`min`, `max`) or relative to the baseline."""

    metric: str
    min: float | None = None
    max: float | None = None
    # the most the candidate may be worse than the baseline, in the metric's units
    # (0.01 = one accuracy point); the metric's direction says what "worse" means
    max_drop: float | None = Field(default=None, ge=0)

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        return check_metric_name(value)

    @model_validator(mode="after")
    def _has_bound(self) -> Constraint:
        if self.min is None and self.max is None and self.max_drop is None:
            raise ValueError(f"constraint on {self.metric}: give min, max or max_drop")
        return self


class SelectionRule(_Strict):
    """Which candidate is best: the best `objective` among those meeting every constraint.

    "Highest accuracy with latency at most 50 ms": objective support_intents/accuracy,
    constraints [{metric: latency_ms, max: 50}]. "Smallest model within one point of the
    baseline": objective params, constraints [{metric: support_intents/accuracy, max_drop: 0.01}].
    """

    objective: str
    # default: the metric's own direction (accuracy up, perplexity/latency/size down)
    direction: Literal["maximize", "minimize"] | None = None
    constraints: list[Constraint] = Field(default_factory=list)
    # whether the baseline itself may be selected (when no candidate beats it)
    include_baseline: bool = True

    @field_validator("objective")
    @classmethod
    def _objective_name(cls, value: str) -> str:
        return check_metric_name(value)


class GateSpec(_Strict):
    """The regression gate: each guarded metric must be shown to be no worse than the baseline
    by more than its margin (pass), shown to be worse (fail), or neither (inconclusive)."""

    metrics: list[str] = Field(min_length=1)
    # how much worse a guarded metric may get: 0.02 (its units) or "3%" (of the baseline)
    margin: Margin = Margin(value=0.0)
    # per metric (TASK/METRIC or METRIC), overriding `margin`
    margins: dict[str, Margin] = Field(default_factory=dict)
    # two-sided level of the paired intervals: a pass needs the worse end of the 1 - alpha
    # interval within the margin, a fail the better end of the 1 - alpha/m one beyond it
    alpha: float = Field(default=0.05, gt=0, lt=1)
    # which candidates must pass: the selected one, or every candidate
    candidates: Literal["selected", "all"] = "selected"

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "tolerance" in data:
            raise ValueError(
                "'tolerance' is now 'margin': how much worse a guarded metric may get "
                "(0.02 in its units or '3%' of the baseline)"
            )
        return data

    @field_validator("metrics")
    @classmethod
    def _task_metrics(cls, value: list[str]) -> list[str]:
        for name in value:
            if "/" not in name:
                raise ValueError(f"{name!r}: the gate guards evaluation metrics (TASK/METRIC)")
        return [check_metric_name(name) for name in value]

    @model_validator(mode="after")
    def _known_margins(self) -> GateSpec:
        for name in unmatched_margins(self.margins, self.metrics):
            raise ValueError(f"margins: {name!r} is not one of the guarded metrics")
        return self

    def margin_of(self, metric: str) -> Margin:
        """The margin of one guarded metric."""
        named = {canonical_name(k): v for k, v in self.margins.items()}
        return margin_for(metric, self.margin, named) or self.margin


class PipelineConfig(_Strict):
    """A whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: str = "default"
    model_options: ModelOptions = ModelOptions()
    tasks: list[str] = Field(min_length=1)
    # first N items per task (a quick pass over the loop)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    # sampled outputs per item of generation tasks with temperature > 0 (`--repeats`)
    repeats: int = Field(default=1, ge=1)
    chat_template: bool = False
    # where candidate models, evaluation files and the report go (relative to the pipeline
    # file; default: runs/NAME in the current folder)
    workdir: str | None = None
    # the result store (default: $WHETSTONE_DB, else ./whetstone.db)
    db: str | None = None
    feedback: FeedbackStep | None = None
    diagnose: DiagnoseStep | None = None
    audit: list[AuditStep] = Field(default_factory=list)
    candidates: list[CandidateModel] = Field(default_factory=list)
    optimize: list[Optimization] = Field(default_factory=list)
    latency: LatencySpec = LatencySpec()
    select: SelectionRule | None = None
    gate: GateSpec | None = None
    # the folder of the pipeline file; relative paths resolve against it
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        names = ["baseline"] + [c.name for c in self.candidates] + [o.name for o in self.optimize]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"candidate name {name!r} is used twice (names must be unique)")
            seen.add(name)
        known = {"baseline"}
        for i, opt in enumerate(self.optimize):
            if opt.start_from is not None and opt.start_from not in known | {
                c.name for c in self.candidates
            }:
                raise ValueError(
                    f"optimize[{i}].start_from: {opt.start_from!r} is not the baseline, a "
                    "listed candidate or an earlier optimization"
                )
            known.add(opt.name)
        audit_names = [a.name or Path(a.data).stem for a in self.audit]
        if len(set(audit_names)) != len(audit_names):
            raise ValueError("two audit entries have the same name: give each a distinct 'name'")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the file, relative to the pipeline file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def workdir_path(self) -> Path:
        """The folder for the pipeline's outputs."""
        return (self.resolve(self.workdir) if self.workdir else Path("runs") / self.name).absolute()
