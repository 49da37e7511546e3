"""`whetstone serve`: an OpenAI-compatible endpoint over a local model."""

from __future__ import annotations

from typing import Annotated

import typer

from whetstone.cli.common import user_errors
from whetstone.errors import ConfigError, ModelError


@user_errors
def serve_command(
    model: Annotated[
        str, typer.Option(help="default, a HF folder or hub id, a .gguf file, fake.")
    ] = "default",
    host: str = "127.0.0.1",
    port: int = 8000,
    name: Annotated[str | None, typer.Option(help="Model name served (default: the spec).")] = None,
    device: str = "auto",
    dtype: str = "auto",
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Require 'Authorization: Bearer KEY' with KEY from this variable."),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one request may generate.")] = 4096,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MB.")] = 8.0,
) -> None:
    """Serve /v1/completions (logprobs, echo), /v1/chat/completions and /v1/models."""
    import os

    from whetstone.models import TokenModel, load_model
    from whetstone.serve.app import ServeLimits, serve

    key = None
    if api_key_env is not None:
        key = os.environ.get(api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {api_key_env}: the variable is unset or empty")
    if max_tokens < 1 or max_body_mb <= 0:
        raise ConfigError("--max-tokens and --max-body-mb must be positive")
    limits = ServeLimits(max_tokens, int(max_body_mb * 1024 * 1024), key)
    lm = load_model(model, device=device, dtype=dtype)
    if not isinstance(lm, TokenModel):
        raise ModelError(f"model '{model}': only local models can be served")
    serve(lm, name or model, host, port, limits)
