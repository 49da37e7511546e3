"""Distillation losses: forward KL, reverse KL and generalized JSD at a temperature, mixed with
the hard-label loss, plus a hidden-state cosine loss.

Every divergence takes log-probabilities over the same support, one row per scored position:
the full vocabulary (online) or the teacher's top-k tokens plus one bucket for the rest of the
vocabulary (offline, from the cached top-k). The loss is

    alpha * T^2 * D(teacher, student at temperature T) + (1 - alpha) * CE(labels)
      + hidden_weight * (1 - cos(student hidden, teacher hidden))

T^2 keeps the gradient scale of the soft term independent of T (Hinton et al. 2015).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]


def _wide(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision inputs (bf16 logits); float32/float64 kept as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probabilities; rows of zero-probability entries add 0."""
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def forward_kl(student_lp: torch.Tensor, teacher_lp: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per row: mass-covering, the classic distillation loss."""
    return _kl(teacher_lp, student_lp)


def reverse_kl(student_lp: torch.Tensor, teacher_lp: torch.Tensor) -> torch.Tensor:
    """KL(student || teacher) per row: mode-seeking, as MiniLLM."""
    return _kl(student_lp, teacher_lp)


def generalized_jsd(
    student_lp: torch.Tensor, teacher_lp: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence per row (GKD, Agarwal et al. 2024, eq. 1).

    With the mixture M = beta * teacher + (1 - beta) * student it is
    beta * KL(teacher || M) + (1 - beta) * KL(student || M); beta = 0 is defined as forward KL
    and beta = 1 as reverse KL, as TRL's GKDTrainer does.
    """
    if beta <= 0.0:
        return forward_kl(student_lp, teacher_lp)
    if beta >= 1.0:
        return reverse_kl(student_lp, teacher_lp)
    log_beta = torch.log(torch.tensor(beta, dtype=student_lp.dtype, device=student_lp.device))
    log_rest = torch.log1p(-torch.tensor(beta, dtype=student_lp.dtype, device=student_lp.device))
    mixture = torch.logsumexp(torch.stack([teacher_lp + log_beta, student_lp + log_rest]), dim=0)
    return beta * _kl(teacher_lp, mixture) + (1 - beta) * _kl(student_lp, mixture)


def divergence(
    kind: Divergence, student_lp: torch.Tensor, teacher_lp: torch.Tensor, beta: float = 0.5
) -> torch.Tensor:
    """The divergence named `kind` per row."""
    if kind == "forward_kl":
        return forward_kl(student_lp, teacher_lp)
    if kind == "reverse_kl":
        return reverse_kl(student_lp, teacher_lp)
    return generalized_jsd(student_lp, teacher_lp, beta)


@dataclass(frozen=True)
class TopK:
    """A teacher distribution kept as its top-k tokens and the log-mass of all other tokens."""

    ids: torch.Tensor  # [rows, k] token ids
    logprobs: torch.Tensor  # [rows, k] log-probabilities at temperature 1
    rest: torch.Tensor | None  # [rows] log of the remaining mass; None when k covers the vocab


def top_k_of(logits: torch.Tensor, k: int) -> TopK:
    """The top-k of a full distribution given by logits (what the offline cache stores)."""
    logits = _wide(logits)
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    k = min(k, logits.shape[-1])
    values, ids = logits.topk(k, dim=-1)
    rest = _rest_logmass(logits, ids, log_z) if k < logits.shape[-1] else None
    return TopK(ids=ids, logprobs=values - log_z, rest=rest)


def _rest_logmass(logits: torch.Tensor, ids: torch.Tensor, log_z: torch.Tensor) -> torch.Tensor:
    """log of the probability mass outside `ids`, computed without 1 - sum cancellation."""
    masked = logits.scatter(-1, ids, float("-inf"))
    return torch.logsumexp(masked, dim=-1) - log_z.squeeze(-1)


def buckets_of(logits: torch.Tensor, top: TopK) -> torch.Tensor:
    """A full distribution (logits) seen on the teacher's support: top-k tokens + the rest."""
    logits = _wide(logits)
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    picked = logits.gather(-1, top.ids) - log_z
    if top.rest is None:
        return picked
    return torch.cat([picked, _rest_logmass(logits, top.ids, log_z).unsqueeze(-1)], dim=-1)


def teacher_buckets(top: TopK) -> torch.Tensor:
    """The teacher's log-probabilities over its own support: top-k tokens + the rest."""
    lp = _wide(top.logprobs)
    if top.rest is None:
        return lp
    return torch.cat([lp, _wide(top.rest).to(lp.dtype).unsqueeze(-1)], dim=-1)


@dataclass(frozen=True)
class LossWeights:
    """How the terms are mixed (see the module docstring)."""

    divergence: Divergence = "forward_kl"
    temperature: float = 1.0
    alpha: float = 0.5
    beta: float = 0.5
    hidden_weight: float = 0.0


def soft_loss(
    student_logits: torch.Tensor,
    teacher: torch.Tensor | TopK,
    weights: LossWeights,
) -> torch.Tensor:
    """T^2 * mean divergence over rows; `teacher` is full logits or a cached top-k."""
    t = weights.temperature
    if isinstance(teacher, TopK):
        student_x, teacher_x = buckets_of(student_logits, teacher), teacher_buckets(teacher)
    else:
        student_x, teacher_x = _wide(student_logits), _wide(teacher)
    student_lp = F.log_softmax(student_x / t, dim=-1)
    teacher_lp = F.log_softmax(teacher_x / t, dim=-1)
    per_row = divergence(weights.divergence, student_lp, teacher_lp, weights.beta)
    return per_row.mean() * t * t


def hidden_cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos(student, teacher) over rows (DistilBERT's cosine embedding loss)."""
    teacher = _wide(teacher).to(_wide(student).dtype)
    return (1.0 - F.cosine_similarity(_wide(student), teacher, dim=-1)).mean()


def can_align_hidden(student_config: Any, teacher_config: Any) -> bool:
    """Whether the hidden-state loss applies: the same hidden size."""
    return getattr(student_config, "hidden_size", None) == getattr(
        teacher_config, "hidden_size", None
    )


@dataclass
class LossParts:
    """The total loss and its terms (detached floats for logging)."""

    total: torch.Tensor
    soft: float = 0.0
    hard: float = 0.0
    hidden: float = 0.0


def combine(
    weights: LossWeights,
    hard: torch.Tensor,
    soft: torch.Tensor | None,
    hidden: torch.Tensor | None,
) -> LossParts:
    """alpha * soft + (1 - alpha) * hard + hidden_weight * hidden (absent terms count 0)."""
    total = hard * (1.0 - weights.alpha) if soft is not None else hard
    if soft is not None:
        total = total + weights.alpha * soft
    if hidden is not None and weights.hidden_weight > 0:
        total = total + weights.hidden_weight * hidden
    return LossParts(
        total=total,
        soft=float(soft.detach()) if soft is not None else 0.0,
        hard=float(hard.detach()),
        hidden=float(hidden.detach()) if hidden is not None else 0.0,
    )
