"""Offline distillation: the teacher's outputs on the training set, computed once and cached.

For a causal LM the cache keeps, at every scored position, the teacher's top-k token ids and
log-probabilities plus the log-mass of the rest of the vocabulary; for a classifier it keeps the
full logits. With `hidden`, it also keeps the teacher's last hidden states (float16).

The cache lives in a folder named by a hash of everything that changes its content (teacher
weights, training tokens, k, hidden), in shards written atomically. A run killed half way
resumes at the first missing shard; a finished cache is reused without loading the teacher's
forward pass again, so tuning the student's settings never re-runs the teacher.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from whetstone.optimize.distill_data import collate, scored_positions
from whetstone.optimize.distill_losses import TopK, top_k_of

SHARD_EXAMPLES = 256
"""Examples per shard file: the unit of resumption."""

ProgressFn = Callable[[int], None]


@dataclass
class CachedTargets:
    """Flattened teacher outputs with per-example row offsets."""

    tensors: dict[str, torch.Tensor]
    row_start: torch.Tensor  # [n_examples + 1] offsets into the scored-position rows
    tok_start: torch.Tensor  # [n_examples + 1] offsets into the token rows (hidden states)

    def rows(self, name: str, index: torch.Tensor, by_token: bool = False) -> torch.Tensor:
        """The rows of tensor `name` for the examples `index`, concatenated in that order."""
        starts = self.tok_start if by_token else self.row_start
        parts = [self.tensors[name][starts[i] : starts[i + 1]] for i in index.tolist()]
        return torch.cat(parts)

    def top_k(self, index: torch.Tensor) -> TopK:
        """The cached top-k teacher distribution at the scored positions of the examples."""
        rest = self.rows("rest", index) if "rest" in self.tensors else None
        return TopK(self.rows("ids", index).long(), self.rows("logprobs", index), rest)


class TeacherCache:
    """A folder of shards holding the teacher's outputs on one training set."""

    def __init__(self, root: Path, key: dict[str, Any]) -> None:
        """Open the cache for `key` (a JSON-able description of what is cached) under `root`."""
        import hashlib

        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.key = key
        self.folder = Path(root) / f"teacher-{digest}"
        self.computed = 0

    def _shard(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.safetensors"

    @property
    def complete(self) -> bool:
        """Whether every shard is written."""
        return (self.folder / "complete.json").exists()

    def build(
        self,
        teacher: Any,
        examples: list[dict[str, Any]],
        pad_id: int,
        batch_size: int,
        progress: ProgressFn | None = None,
    ) -> int:
        """Compute the missing shards with `teacher`; returns the number of examples computed."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.json").write_text(json.dumps(self.key, indent=1, sort_keys=True))
        n_shards = (len(examples) + SHARD_EXAMPLES - 1) // SHARD_EXAMPLES
        for s in range(n_shards):
            chunk = examples[s * SHARD_EXAMPLES : (s + 1) * SHARD_EXAMPLES]
            if self._shard(s).exists():
                if progress:
                    progress(len(chunk))
                continue
            parts = [
                self._teacher_outputs(teacher, chunk[b : b + batch_size], pad_id)
                for b in range(0, len(chunk), batch_size)
            ]
            tensors = {k: torch.cat([p[k] for p in parts]).contiguous() for k in parts[0]}
            tmp = self._shard(s).with_suffix(".tmp")
            save_file(tensors, str(tmp))
            os.replace(tmp, self._shard(s))
            self.computed += len(chunk)
            if progress:
                progress(len(chunk))
        done = {"examples": len(examples), "shards": n_shards}
        tmp = self.folder / "complete.tmp"
        tmp.write_text(json.dumps(done))
        os.replace(tmp, self.folder / "complete.json")
        return self.computed

    @torch.inference_mode()
    def _teacher_outputs(
        self, teacher: Any, batch_examples: list[dict[str, Any]], pad_id: int
    ) -> dict[str, torch.Tensor]:
        batch = collate(batch_examples, pad_id)
        device = next(teacher.parameters()).device
        hidden = bool(self.key.get("hidden"))
        out = teacher(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            output_hidden_states=hidden,
        )
        result: dict[str, torch.Tensor] = {}
        vocab = int(self.key.get("vocab") or out.logits.shape[-1])
        if batch["labels"].dim() == 1:  # classifier: one row of logits per example
            result["logits"] = out.logits.float().cpu()
            result["rows"] = torch.ones(len(batch_examples), dtype=torch.int64)
            tokens = batch["attention_mask"].bool()
        else:
            tokens = scored_positions(batch["labels"])
            top = top_k_of(out.logits[..., :vocab][tokens.to(device)], int(self.key["top_k"]))
            result["ids"] = top.ids.to(torch.int32).cpu()
            result["logprobs"] = top.logprobs.cpu()
            if top.rest is not None:
                result["rest"] = top.rest.cpu()
            result["rows"] = tokens.sum(1).to(torch.int64)
        if hidden:
            result["hidden"] = out.hidden_states[-1][tokens.to(device)].to(torch.float16).cpu()
            result["tokens"] = tokens.sum(1).to(torch.int64)
        return result

    def load(self) -> CachedTargets:
        """All shards as one CachedTargets."""
        from safetensors.torch import load_file

        shards = sorted(self.folder.glob("shard-*.safetensors"))
        parts = [load_file(str(p)) for p in shards]
        tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        rows = tensors.pop("rows")
        tokens = tensors.pop("tokens", rows)
        zero = torch.zeros(1, dtype=torch.int64)
        return CachedTargets(
            tensors, torch.cat([zero, rows.cumsum(0)]), torch.cat([zero, tokens.cumsum(0)])
        )
