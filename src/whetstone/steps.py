"""The step registry: every step a pipeline file can name, declared once.

A step is its public function, its config model, the kind its stored result is kept under,
the result model, the report section it fills and the function that renders it. Entries are
"module:attr" strings, imported when a pipeline or a report uses the step, so a step whose
extra is not installed costs nothing until it is asked for. An outside package adds a step
through the entry-point group ``whetstone.steps`` (a `StepSpec`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from whetstone.errors import ConfigError
from whetstone.registry import Registry

Section = Literal["feedback", "diagnosis", "audit", "optimization"]

SECTIONS: tuple[Section, ...] = ("feedback", "diagnosis", "audit", "optimization")
"""The report sections that steps fill, in report order."""


@dataclass(frozen=True)
class StepSpec:
    """One step: where its function, config and result live, and where it is reported."""

    run: str
    config: str | None
    artifact_kind: str
    result: str
    section: Section
    title: str
    render: str

    def load(self, name: str, field: Literal["run", "config", "result", "render"]) -> Any:
        """The object a field names (None for no config), or a ConfigError saying this
        install lacks it."""
        target = getattr(self, field)
        return None if target is None else load_target(name, target)


def load_target(step: str, target: str) -> Any:
    """The object a step's "module:attr" names, or a ConfigError saying this install lacks it."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"the pipeline asks for the '{step}' step, but this install of whetstone does "
            f"not provide it ({module_name} cannot be imported: {err})"
        ) from err
    found = getattr(module, attr, None)
    if found is None:
        raise ConfigError(
            f"the pipeline asks for the '{step}' step, but this version of whetstone has no "
            f"{module_name}.{attr}"
        )
    return found


def _accept(spec: object) -> tuple[str, ...]:
    if not isinstance(spec, StepSpec):
        raise TypeError(f"a whetstone.steps entry point must name a StepSpec, not {spec!r}")
    return ()


STEPS: Registry[StepSpec] = Registry("steps", noun="step", aliases_of=_accept)
"""Every step by the name a pipeline file uses."""


def step_for_artifact(kind: str) -> tuple[str, StepSpec] | None:
    """The step whose results are stored under the artifact ``kind``, if any."""
    for name, spec in STEPS.items():
        if spec.artifact_kind == kind:
            return name, spec
    return None


_RENDER = "render_html_section"
STEPS.register(
    "feedback",
    StepSpec(
        "whetstone.feedback:campaign_summary",
        None,
        "feedback",
        "whetstone.feedback:CampaignSummary",
        "feedback",
        "Feedback",
        f"whetstone.feedback:{_RENDER}",
    ),
)
STEPS.register(
    "diagnose",
    StepSpec(
        "whetstone.diagnose:diagnose",
        "whetstone.diagnose:DiagnoseOptions",
        "diagnosis",
        "whetstone.diagnose:Diagnosis",
        "diagnosis",
        "Error analysis",
        f"whetstone.diagnose:{_RENDER}",
    ),
)
STEPS.register(
    "audit",
    StepSpec(
        "whetstone.audit:audit",
        "whetstone.audit:AuditConfig",
        "audit",
        "whetstone.audit:Audit",
        "audit",
        "Training data audit",
        f"whetstone.audit:{_RENDER}",
    ),
)
STEPS.register(
    "finetune",
    StepSpec(
        "whetstone.optimize:finetune",
        "whetstone.optimize.finetune_config:FinetuneConfig",
        "finetune",
        "whetstone.optimize.results:FinetuneResult",
        "optimization",
        "Fine-tuning",
        f"whetstone.optimize:{_RENDER}",
    ),
)
STEPS.register(
    "tune",
    StepSpec(
        "whetstone.optimize:tune",
        "whetstone.optimize.tune_config:TuneConfig",
        "study",
        "whetstone.optimize.results:StudyResult",
        "optimization",
        "Hyperparameter search",
        f"whetstone.optimize:{_RENDER}",
    ),
)
STEPS.register(
    "distill",
    StepSpec(
        "whetstone.optimize.distill:distill",
        "whetstone.optimize.distill_config:DistillConfig",
        "distill",
        "whetstone.optimize.distill:DistillResult",
        "optimization",
        "Distillation",
        f"whetstone.optimize.distill:{_RENDER}",
    ),
)
STEPS.register(
    "quantize",
    StepSpec(
        "whetstone.optimize.quantize:quantize",
        "whetstone.optimize.distill_config:QuantizeConfig",
        "quantize",
        "whetstone.optimize.distill_report:QuantizeResult",
        "optimization",
        "Quantization",
        f"whetstone.optimize.quantize:{_RENDER}",
    ),
)
