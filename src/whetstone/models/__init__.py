"""Model backends behind one protocol, their registry, and `load_model` that picks one from a
spec string."""

from __future__ import annotations

from whetstone.models.backends import (
    BACKENDS,
    BackendFactory,
    ModelOptions,
    load_model,
    register_backend,
)
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RollingRequest,
    RollingResult,
    TokenLogprob,
    TokenModel,
)

__all__ = [
    "BACKENDS",
    "BackendFactory",
    "GenerationRequest",
    "LanguageModel",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "ModelOptions",
    "RollingRequest",
    "RollingResult",
    "TokenLogprob",
    "TokenModel",
    "load_model",
    "register_backend",
]
