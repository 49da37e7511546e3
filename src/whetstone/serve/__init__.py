"""`whetstone serve`: an OpenAI-compatible HTTP endpoint over a local model backend."""

from __future__ import annotations

from whetstone.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
