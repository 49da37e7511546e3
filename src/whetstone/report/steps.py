"""Sections written by the other steps: each step renders its own stored result.

The artifact kind says which step wrote a result and which report section it belongs to; the
step's `render_html_section(result) -> str` turns the stored payload (validated back into the
step's result model) into an HTML fragment. A result whose step is not installed is shown as
its main fields, so a report never fails for want of a renderer.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from whetstone.errors import ConfigError
from whetstone.pipeline.records import StepArtifact
from whetstone.report.model import StepSection
from whetstone.steps import SECTIONS, step_for_artifact
from whetstone.store import Store


def _renderer(kind: str) -> tuple[Any, type[BaseModel] | None]:
    """The step's render function and result model, or (None, None) when not installed."""
    found = step_for_artifact(kind)
    if found is None:
        return None, None
    name, spec = found
    try:
        return spec.load(name, "render"), spec.load(name, "result")
    except ConfigError:
        return None, None


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
    found = step_for_artifact(kind)
    assert found is not None  # a renderer was found for it
    return str(render(result)), found[1].render.replace(":", ".")


def step_sections(store: Store, artifacts: Sequence[StepArtifact]) -> dict[str, list[StepSection]]:
    """Report sections (feedback, diagnosis, audit, optimization) of the stored step results."""
    out: dict[str, list[StepSection]] = {name: [] for name in SECTIONS}
    for art in artifacts:
        found = step_for_artifact(art.kind)
        row = store.get_artifact(art.kind, art.key) if found else None
        if found is None or row is None:
            continue
        fragment, source = render_artifact(art.kind, row.payload)
        spec = found[1]
        title = art.title or f"{spec.title} · {art.key}"
        section = out[spec.section]
        section.append(StepSection(f"{art.kind}-{len(section)}", title, fragment, source))
    return out
