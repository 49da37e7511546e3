"""`whetstone serve`: an OpenAI-compatible endpoint over a local model."""

from __future__ import annotations

from typing import Annotated

import typer

from whetstone.cli.common import user_errors
from whetstone.errors import ModelError


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
) -> None:
    """Serve /v1/completions (logprobs, echo), /v1/chat/completions and /v1/models."""
    from whetstone.models import TokenModel, load_model
    from whetstone.serve.app import serve

    lm = load_model(model, device=device, dtype=dtype)
    if not isinstance(lm, TokenModel):
        raise ModelError(f"model '{model}': only local models can be served")
    serve(lm, name or model, host, port)
