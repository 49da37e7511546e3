"""Sections written by the other steps: each step renders its own stored result.

The artifact kind says which step wrote a result and which report section it belongs to; the
step's `render_html_section(result) -> str` turns the stored payload (validated back into the
step's result model) into an HTML fragment. A result whose step is not installed is shown as
its main fields, so a report never fails for want of a renderer.
"""

from __future__ import annotations

import html
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from whetstone.pipeline.records import StepArtifact
from whetstone.report.model import StepSection
from whetstone.store import Store


@dataclass(frozen=True)
class Renderer:
    """Which report section a step's result goes to, and where its renderer and model live."""

    section: str
    title: str
    module: str
    result_module: str
    result_class: str
    func: str = "render_html_section"


#: Artifact kind -> how to render it.
RENDERERS: dict[str, Renderer] = {
    "feedback": Renderer(
        "feedback", "Feedback", "whetstone.feedback", "whetstone.feedback", "CampaignSummary"
    ),
    "diagnosis": Renderer(
        "diagnosis", "Error analysis", "whetstone.diagnose", "whetstone.diagnose", "Diagnosis"
    ),
    "audit": Renderer(
        "audit", "Training data audit", "whetstone.audit", "whetstone.audit", "Audit"
    ),
    "finetune": Renderer(
        "optimization",
        "Fine-tuning",
        "whetstone.optimize",
        "whetstone.optimize.results",
        "FinetuneResult",
    ),
    "study": Renderer(
        "optimization",
        "Hyperparameter search",
        "whetstone.optimize",
        "whetstone.optimize.results",
        "StudyResult",
    ),
    "distill": Renderer(
        "optimization",
        "Distillation",
        "whetstone.optimize.distill",
        "whetstone.optimize.distill",
        "DistillResult",
    ),
    "quantize": Renderer(
        "optimization",
        "Quantization",
        "whetstone.optimize.quantize",
        "whetstone.optimize.distill_report",
        "QuantizeResult",
    ),
}
SECTIONS = ("feedback", "diagnosis", "audit", "optimization")


def _renderer(kind: str) -> tuple[Any, type[BaseModel] | None]:
    """The step's render function and result model, or (None, None) when not installed."""
    spec = RENDERERS[kind]
    try:
        render = getattr(importlib.import_module(spec.module), spec.func, None)
        model = getattr(importlib.import_module(spec.result_module), spec.result_class, None)
    except ImportError:
        return None, None
    return render, model


def generic_html(payload: dict[str, Any]) -> str:
    """The scalar fields of a payload as a small table (when no renderer is available)."""
    rows = [
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in payload.items()
        if isinstance(v, str | int | float | bool) or v is None
    ]
    return f'<table class="kv">{"".join(rows)}</table>'


def render_artifact(kind: str, payload: dict[str, Any]) -> tuple[str, str]:
    """(HTML fragment, where it came from) for one stored step result."""
    render, model = _renderer(kind)
    if render is None:
        return generic_html(payload), "stored fields"
    try:
        result = model.model_validate(payload) if model is not None else payload
    except ValidationError:  # stored by another version of the step
        return generic_html(payload), "stored fields (the step's result model has changed)"
    spec = RENDERERS[kind]
    return str(render(result)), f"{spec.module}.{spec.func}"


def step_sections(store: Store, artifacts: Sequence[StepArtifact]) -> dict[str, list[StepSection]]:
    """Report sections (feedback, diagnosis, audit, optimization) of the stored step results."""
    out: dict[str, list[StepSection]] = {name: [] for name in SECTIONS}
    for art in artifacts:
        if art.kind not in RENDERERS:
            continue
        row = store.get_artifact(art.kind, art.key)
        if row is None:
            continue
        fragment, source = render_artifact(art.kind, row.payload)
        spec = RENDERERS[art.kind]
        title = art.title or f"{spec.title} · {art.key}"
        section = out[spec.section]
        section.append(StepSection(f"{art.kind}-{len(section)}", title, fragment, source))
    return out
