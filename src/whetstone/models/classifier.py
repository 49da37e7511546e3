"""Sequence classifiers (``*ForSequenceClassification``) behind the whetstone model interface.

A fine-tuned classifier answers classification tasks with its class probabilities instead of
the log-likelihood of verbalized labels: the task's prompt (without few-shot examples) is the
classifier's input, and each task label is matched to one of the model's ``id2label`` names
(the label's verbalization, its key, or ``LABEL_<key>``). Other kinds of request are errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from whetstone.errors import ModelError, missing_extra
from whetstone.models.base import (
    GenerationRequest,
    LanguageModel,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    Progress,
    RollingRequest,
    RollingResult,
)
from whetstone.records import ModelIdentity

DEFAULT_BATCH = 32
DEFAULT_MAX_LENGTH = 512


def is_sequence_classifier(folder: str | Path) -> bool:
    """Whether a Hugging Face folder holds a ``*ForSequenceClassification`` model."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return False
    try:
        archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in archs)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise missing_extra("torch", "hf") from exc
    return torch


def state_hash(model: Any) -> str:
    """sha256 over a module's parameters and buffers (names, shapes and bytes), 16 hex digits."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(_torch().uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


class SequenceClassifier(LanguageModel):
    """A transformers sequence-classification model: class probabilities for texts.

    ``source`` is a folder; or pass an already built ``model`` and ``tokenizer`` (a model being
    trained), in which case nothing is loaded and ``name``/``model_hash`` identify it.
    """

    def __init__(
        self,
        source: str | Path | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | None = None,
        max_length: int | None = None,
        name: str | None = None,
        model_hash: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        from whetstone.models.hf import resolve_device, resolve_dtype, weights_hash

        if source is None and model is None:
            raise ModelError("a sequence classifier needs a folder or a model")
        self.source = str(source) if source is not None else (name or "classifier")
        if model is None:
            self.device = resolve_device(device)
            self.torch_dtype = resolve_dtype(dtype, self.device)
            self.tokenizer, self.model = self._load()
        else:
            self.model, self.tokenizer = model, tokenizer
            self.device = str(next(model.parameters()).device)
            self.torch_dtype = next(model.parameters()).dtype
        self.batch_size = batch_size or DEFAULT_BATCH
        self.max_length = max_length or self._default_max_length()
        if model_hash is None:
            folder = Path(self.source)
            model_hash = weights_hash(folder)[:16] if folder.is_dir() else state_hash(self.model)
        self.identity = ModelIdentity(
            backend="hf-classifier",
            name=name or self.source,
            hash=model_hash,
            dtype=str(self.torch_dtype).removeprefix("torch."),
        )

    def _load(self) -> tuple[Any, Any]:
        _torch()
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise missing_extra("transformers", "hf") from exc
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.source, dtype=self.torch_dtype
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"model '{self.source}': cannot load it as a sequence classifier ({first})"
            ) from exc
        model.to(self.device).eval()
        return tokenizer, model

    def _default_max_length(self) -> int:
        limits = [DEFAULT_MAX_LENGTH]
        positions = getattr(self.model.config, "max_position_embeddings", None)
        if positions:
            limits.append(int(positions))
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max and tok_max < 10**9:
            limits.append(int(tok_max))
        return min(limits)

    @property
    def labels(self) -> list[str]:
        """The model's class names in output order (``id2label``)."""
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(int(self.model.config.num_labels))]

    def probabilities(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Softmax class probabilities, ``[len(texts), num_labels]`` float64.

        Texts run in batches sorted by length (padding on the right, attention-masked), so the
        result does not depend on the batch size beyond float rounding.
        """
        torch = _torch()
        out = np.zeros((len(texts), int(self.model.config.num_labels)), dtype=np.float64)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for lo in range(0, len(order), self.batch_size):
                    rows = order[lo : lo + self.batch_size]
                    batch = self.tokenizer(
                        [texts[i] for i in rows],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    ).to(self.model.device)
                    logits = self.model(**batch).logits.float()
                    out[rows] = torch.softmax(logits, dim=-1).cpu().double().numpy()
                    if progress:
                        progress(len(rows))
        finally:
            self.model.train(was_training)
        return out

    def label_columns(self, labels: Mapping[str, str], task_name: str) -> list[int]:
        """For each of a task's labels (key -> verbalization, in order), the model output that
        stands for it (by verbalization, key or ``LABEL_<key>``)."""
        names = self.labels
        lowered = [n.lower() for n in names]
        columns: list[int] = []
        for key, words in labels.items():
            for wanted in (words, key, f"LABEL_{key}"):
                if wanted.lower() in lowered:
                    columns.append(lowered.index(wanted.lower()))
                    break
            else:
                raise ModelError(
                    f"task '{task_name}': label {key!r} ({words!r}) is none of the classifier's "
                    f"labels ({', '.join(names)}); expected id2label names matching the task's "
                    "labels or their verbalizations"
                )
        if len(set(columns)) != len(columns):
            raise ModelError(
                f"task '{task_name}': two task labels map to the same classifier label "
                f"({', '.join(names)})"
            )
        return columns

    def label_probabilities(
        self,
        texts: Sequence[str],
        labels: Mapping[str, str],
        task_name: str,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Probabilities over a task's labels (in the task's order) for each text.

        Outputs the task does not use are dropped and the rest renormalized.
        """
        columns = self.label_columns(labels, task_name)
        per_item = len(labels)

        def advance(n: int) -> None:
            if progress:
                progress(n * per_item)  # the progress bar counts one request per label

        probs = self.probabilities(texts, advance)[:, columns]
        return probs / probs.sum(axis=1, keepdims=True)

    def _unsupported(self, what: str) -> ModelError:
        return ModelError(
            f"model '{self.identity.name}' is a sequence classifier: it answers classification "
            f"tasks only, not {what}"
        )

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: Progress | None = None
    ) -> list[LoglikelihoodResult]:
        """Not available: a classifier has no token log-likelihoods."""
        raise self._unsupported("log-likelihood requests (multiple-choice tasks)")

    def loglikelihood_rolling(
        self, requests: Sequence[RollingRequest], progress: Progress | None = None
    ) -> list[RollingResult]:
        """Not available: a classifier has no token log-likelihoods."""
        raise self._unsupported("perplexity tasks")

    def generate(
        self, requests: Sequence[GenerationRequest], progress: Progress | None = None
    ) -> list[str]:
        """Not available: a classifier does not generate text."""
        raise self._unsupported("generation")

    def close(self) -> None:
        """Drop the weights."""
        self.model = None
