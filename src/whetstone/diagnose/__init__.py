"""Error analysis: where and why a model fails (categories, clusters, weak slices).

``diagnose(runs, ...)`` reads stored runs and feedback and returns a ``Diagnosis`` (the content
of ``diagnosis.json``); ``render_html_section`` turns it into an HTML fragment for reports;
``load_taxonomy`` reads the error categories (the seed ones by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from whetstone.diagnose.schema import Diagnosis
from whetstone.diagnose.taxonomy import Category, Rule, Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from whetstone.diagnose.analysis import DiagnoseOptions, diagnose, diagnose_observations
    from whetstone.diagnose.html import render_html_section

__all__ = [
    "Category",
    "DiagnoseOptions",
    "Diagnosis",
    "Rule",
    "Taxonomy",
    "diagnose",
    "diagnose_observations",
    "load_taxonomy",
    "render_html_section",
]

_LAZY = {
    "DiagnoseOptions": "whetstone.diagnose.analysis",
    "diagnose": "whetstone.diagnose.analysis",
    "diagnose_observations": "whetstone.diagnose.analysis",
    "render_html_section": "whetstone.diagnose.html",
}


def __getattr__(name: str) -> Any:
    """Import the analysis (scikit-learn, scipy) only when it is used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'whetstone.diagnose' has no attribute {name!r}")
