"""The transformers backend around a causal LM that is already in memory (one being trained)."""

from __future__ import annotations

from typing import Any

from whetstone.models.hf import HFModel


class InMemoryCausalLM(HFModel):
    """The HF backend around a causal LM that is already in memory (nothing is loaded)."""

    def __init__(self, model: Any, tokenizer: Any, name: str, max_length: int | None = None):
        self._given = (tokenizer, model)
        param = next(model.parameters())
        super().__init__(
            name,
            device=str(param.device),
            dtype=str(param.dtype).removeprefix("torch."),
            max_length=max_length,
            name=name,
            model_hash=name,
        )

    def _load(self) -> tuple[Any, Any]:
        tokenizer, model = self._given
        model.eval()
        return tokenizer, model
