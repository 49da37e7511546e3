"""Distillation losses against independent references: scipy's KL and Jensen-Shannon, a numpy
re-implementation of TRL's GKDTrainer.generalized_jsd_loss, numpy top-k buckets and cosines."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax as np_log_softmax
from scipy.special import softmax
from scipy.stats import entropy

torch = pytest.importorskip("torch")

from whetstone.optimize.distill_losses import (  # noqa: E402
    LossWeights,
    buckets_of,
    combine,
    forward_kl,
    generalized_jsd,
    hidden_cosine_loss,
    reverse_kl,
    soft_loss,
    teacher_buckets,
    top_k_of,
)

RNG = np.random.default_rng(0)
STUDENT = RNG.normal(size=(6, 11)) * 2
TEACHER = RNG.normal(size=(6, 11)) * 3


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def _lp(x: np.ndarray) -> torch.Tensor:
    return torch.log_softmax(_t(x), dim=-1)


def trl_generalized_jsd(
    student_logits: np.ndarray, teacher_logits: np.ndarray, beta: float, temperature: float = 1.0
) -> float:
    """TRL's generalized_jsd_loss (batchmean over rows) written again in numpy.

    The TRL code: log-softmax both at the temperature; beta == 0 -> kl_div(student, teacher)
    = KL(teacher || student); beta == 1 -> KL(student || teacher); otherwise the mixture
    M = beta * teacher + (1 - beta) * student and jsd = beta * KL(teacher || M)
    + (1 - beta) * KL(student || M), summed over the vocabulary and averaged over rows.
    """
    s = softmax(student_logits / temperature, axis=-1)
    t = softmax(teacher_logits / temperature, axis=-1)
    if beta == 0:
        rows = np.sum(t * (np.log(t) - np.log(s)), axis=-1)
    elif beta == 1:
        rows = np.sum(s * (np.log(s) - np.log(t)), axis=-1)
    else:
        m = beta * t + (1 - beta) * s
        rows = beta * np.sum(t * np.log(t / m), axis=-1) + (1 - beta) * np.sum(
            s * np.log(s / m), axis=-1
        )
    return float(rows.mean())


def test_forward_and_reverse_kl_match_scipy() -> None:
    p_s, p_t = softmax(STUDENT, axis=-1), softmax(TEACHER, axis=-1)
    fwd = forward_kl(_lp(STUDENT), _lp(TEACHER)).numpy()
    rev = reverse_kl(_lp(STUDENT), _lp(TEACHER)).numpy()
    np.testing.assert_allclose(fwd, entropy(p_t, p_s, axis=-1), rtol=1e-10)
    np.testing.assert_allclose(rev, entropy(p_s, p_t, axis=-1), rtol=1e-10)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_generalized_jsd_matches_trl_formula(beta: float, temperature: float) -> None:
    ours = (
        generalized_jsd(_lp(STUDENT / temperature), _lp(TEACHER / temperature), beta).mean().item()
    )
    assert ours == pytest.approx(trl_generalized_jsd(STUDENT, TEACHER, beta, temperature), rel=1e-9)


def test_symmetric_jsd_is_scipy_jensen_shannon_squared() -> None:
    p_s, p_t = softmax(STUDENT, axis=-1), softmax(TEACHER, axis=-1)
    ours = generalized_jsd(_lp(STUDENT), _lp(TEACHER), 0.5).numpy()
    np.testing.assert_allclose(ours, jensenshannon(p_s, p_t, axis=-1) ** 2, rtol=1e-8)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
def test_soft_loss_is_t_squared_times_mean_divergence(kind: str) -> None:
    t = 3.0
    w = LossWeights(divergence=kind, temperature=t, beta=0.3)  # type: ignore[arg-type]
    loss = soft_loss(_t(STUDENT), _t(TEACHER), w).item()
    p_s, p_t = softmax(STUDENT / t, axis=-1), softmax(TEACHER / t, axis=-1)
    if kind == "forward_kl":
        rows = entropy(p_t, p_s, axis=-1)
    elif kind == "reverse_kl":
        rows = entropy(p_s, p_t, axis=-1)
    else:
        m = 0.3 * p_t + 0.7 * p_s
        rows = 0.3 * entropy(p_t, m, axis=-1) + 0.7 * entropy(p_s, m, axis=-1)
    assert loss == pytest.approx(t * t * rows.mean(), rel=1e-8)


def test_top_k_buckets_group_the_rest_of_the_vocabulary() -> None:
    k = 4
    top = top_k_of(_t(TEACHER), k)
    p_t = softmax(TEACHER, axis=-1)
    order = np.argsort(-TEACHER, axis=-1)[:, :k]
    np.testing.assert_array_equal(np.sort(top.ids.numpy(), -1), np.sort(order, -1))
    expected_t = np.concatenate(
        [
            np.take_along_axis(p_t, top.ids.numpy(), -1),
            1 - np.take_along_axis(p_t, order, -1).sum(-1, keepdims=True),
        ],
        axis=-1,
    )
    np.testing.assert_allclose(teacher_buckets(top).exp().numpy(), expected_t, rtol=1e-9)
    p_s = softmax(STUDENT, axis=-1)
    picked = np.take_along_axis(p_s, top.ids.numpy(), -1)
    expected_s = np.concatenate([picked, 1 - picked.sum(-1, keepdims=True)], axis=-1)
    np.testing.assert_allclose(buckets_of(_t(STUDENT), top).exp().numpy(), expected_s, rtol=1e-9)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_top_k_covering_the_vocabulary_equals_the_full_loss(kind: str, temperature: float) -> None:
    w = LossWeights(divergence=kind, temperature=temperature)  # type: ignore[arg-type]
    full = soft_loss(_t(STUDENT), _t(TEACHER), w).item()
    cached = soft_loss(_t(STUDENT), top_k_of(_t(TEACHER), STUDENT.shape[-1]), w).item()
    assert cached == pytest.approx(full, rel=1e-9)


def test_top_k_temperature_tempers_both_bucket_distributions_alike() -> None:
    """At T != 1 the (k+1)-bucket distributions are tempered as logits: a student equal to the
    teacher has zero loss, and the loss is the numpy KL of the tempered buckets."""
    top = top_k_of(_t(TEACHER), 3)
    w = LossWeights(divergence="forward_kl", temperature=2.0)
    assert soft_loss(_t(TEACHER), top, w).item() == pytest.approx(0.0, abs=1e-12)
    s = np_log_softmax(buckets_of(_t(STUDENT), top).numpy() / 2.0, axis=-1)
    t = np_log_softmax(teacher_buckets(top).numpy() / 2.0, axis=-1)
    expected = 4.0 * np.mean(np.sum(np.exp(t) * (t - s), axis=-1))
    assert soft_loss(_t(STUDENT), top, w).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("k", [3, 11])
def test_gradients_stay_finite(k: int) -> None:
    student = _t(STUDENT).requires_grad_(True)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        w = LossWeights(divergence=kind, temperature=2.0)  # type: ignore[arg-type]
        soft_loss(student, top_k_of(_t(TEACHER), k), w).backward()
        assert student.grad is not None and torch.isfinite(student.grad).all()
        student.grad = None


def test_hidden_cosine_loss_matches_numpy() -> None:
    a, b = RNG.normal(size=(5, 7)), RNG.normal(size=(5, 7))
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert hidden_cosine_loss(_t(a), _t(b)).item() == pytest.approx(np.mean(1 - cos), rel=1e-9)


def test_combine_mixes_by_alpha_and_adds_the_hidden_term() -> None:
    w = LossWeights(alpha=0.25, hidden_weight=2.0)
    parts = combine(w, torch.tensor(4.0), torch.tensor(8.0), torch.tensor(0.5))
    assert parts.total.item() == pytest.approx(0.75 * 4 + 0.25 * 8 + 2 * 0.5)
    assert (parts.hard, parts.soft, parts.hidden) == (4.0, 8.0, 0.5)
    alone = combine(w, torch.tensor(4.0), None, None)  # no teacher: the hard loss alone
    assert alone.total.item() == 4.0
