"""The declaration of one metric: what produces it, which way is better, how it aggregates,
how its interval and its paired test are computed."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

Direction = Literal["higher", "lower"]
Aggregation = Literal["proportion", "mean", "ratio", "corpus", "cost"]
Transform = Literal["exp_neg", "bits"]
Interval = Literal["wilson", "mover_wilson", "bca", "bootstrap_t_ratio", "ece_projection", "none"]
PairedTest = Literal[
    "mcnemar_exact", "sign_flip", "ratio_swap_permutation", "corpus_swap_permutation", "none"
]


class MetricSpec(BaseModel):
    """One metric, declared once; evaluation, comparison, selection, the gate, fine-tuning,
    tuning, distillation and reports read it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    # task kinds that produce it ("cost" for pipeline costs, "training" for trainer losses)
    kinds: tuple[str, ...]
    direction: Direction
    aggregation: Aggregation
    # interval method, as named in MetricValue.method
    interval: Interval
    # paired test, as named in MetricComparison.test
    paired_test: PairedTest
    description: str
    aliases: tuple[str, ...] = ()
    # the kinds whose tasks report it when their file names no metrics
    default_for: tuple[str, ...] = ()
    # shown first in summaries (CLI tables, report overview)
    headline: bool = False
    # corpus ratios: the per-item count column and the transform of sum(logprob) / sum(unit)
    unit: str | None = None
    transform: Transform | None = None
    # 100 for BLEU and chrF
    scale: float = 1.0

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value is an improvement."""
        return self.direction == "higher"

    @property
    def optuna_direction(self) -> Literal["maximize", "minimize"]:
        """Optuna's name for the direction."""
        return "maximize" if self.higher_is_better else "minimize"


def apply_transform(spec: MetricSpec, ratio: np.ndarray) -> np.ndarray:
    """A corpus ratio metric's value from sum(logprob) / sum(unit), elementwise."""
    if spec.transform == "exp_neg":
        return np.exp(-ratio)
    if spec.transform == "bits":
        return -ratio / math.log(2)
    raise ValueError(f"metric {spec.name!r} is not a corpus ratio")
