"""TaiLr / γ-cross-entropy: its limits, its stability and its thresholded form."""

import math

import pytest
import torch
import torch.nn.functional as F

from ltlight.losses import TaiLrLoss

C = 5


def batch(seed: int = 0, n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, generator=gen) * 2, torch.randint(0, C, (n,), generator=gen)


def target_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logits.double().softmax(-1).gather(1, target[:, None]).squeeze(1)


def gamma_ce_float64(log_p: float, gamma: float) -> float:
    """−log(γ + (1−γ)p)/(1−γ) in float64, from log p so p may be below float64's range too."""
    if gamma == 1.0:
        return -math.expm1(log_p)
    if gamma == 0.0:
        return -log_p
    mixture = math.log(gamma) + math.log1p((1 - gamma) * math.exp(log_p) / gamma)
    return -mixture / (1.0 - gamma)


@pytest.mark.parametrize("weight", [None, [0.5, 1.0, 2.0, 3.0, 0.1]])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_gamma_zero_is_cross_entropy(reduction, weight):
    logits, target = batch()
    ours = TaiLrLoss(gamma=0.0, weight=weight, reduction=reduction)(logits, target)
    w = None if weight is None else torch.tensor(weight)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, weight=w, reduction=reduction))


def test_gamma_one_is_one_minus_p_y():
    logits, target = batch()
    expected = 1.0 - target_probability(logits, target)
    ours = TaiLrLoss(gamma=1.0, reduction="none")(logits, target)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("epsilon", [1e-2, 1e-4, 1e-6, 1e-8])
def test_value_is_continuous_as_gamma_tends_to_one(epsilon):
    # ℓ(1 − ε) = −log(1 − ε(1 − p))/ε = (1 − p) + ε(1 − p)²/2 + O(ε²)
    logits, target = batch()
    p = target_probability(logits, target)
    ours = TaiLrLoss(gamma=1.0 - epsilon, reduction="none")(logits, target).double()
    assert torch.all((ours - (1.0 - p)).abs() <= epsilon * (1 - p) ** 2 / 2 * 1.01 + 2e-6)
    at_one = TaiLrLoss(gamma=1.0, reduction="none")(logits, target).double()
    assert torch.all((ours - at_one).abs() <= epsilon + 2e-6)


@pytest.mark.parametrize("gamma", [0.0, 1e-30, 1e-3, 0.5, 1 - 1e-6, 1.0])
def test_p_y_below_float32_range_gives_a_finite_exact_value(gamma):
    # logit gap 200: p_y = e^{-200} ≈ 1e-87, far below float32's smallest denormal (1e-45)
    logits = torch.tensor([[0.0, 200.0, 0.0, 0.0, 0.0], [3.0, 0.0, 203.0, 1.0, -5.0]])
    target = torch.tensor([0, 1])
    logits.requires_grad_(True)
    loss = TaiLrLoss(gamma=gamma, reduction="none")
    values = loss(logits, target)
    log_p = torch.log_softmax(logits.detach().double(), -1).gather(1, target[:, None]).squeeze(1)
    expected = torch.tensor([gamma_ce_float64(lp, gamma) for lp in log_p.tolist()])
    assert torch.all(torch.isfinite(values))
    torch.testing.assert_close(values.double(), expected.double(), rtol=1e-6, atol=1e-6)
    values.sum().backward()
    assert torch.all(torch.isfinite(logits.grad))


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.8, 1.0])
def test_gradient_is_cross_entropy_gradient_scaled_by_p_over_mixture(gamma):
    # ∇ℓ = w·∇(−log p_y) with w = p_y / (γ + (1 − γ)p_y): the down-weighting TaiLr is about
    logits, target = batch(seed=1)
    logits = logits.double().requires_grad_(True)
    TaiLrLoss(gamma=gamma, reduction="sum")(logits, target).backward()
    softmax = logits.detach().softmax(-1)
    p = softmax.gather(1, target[:, None])
    w = p / (gamma + (1 - gamma) * p)
    torch.testing.assert_close(logits.grad, w * (softmax - F.one_hot(target, C)))


@pytest.mark.parametrize("gamma", [0.2, 0.7, 1.0])
def test_threshold_form_has_the_gamma_ce_gradient_where_the_weight_is_not_clamped(gamma):
    logits, target = batch(seed=2)
    p = target_probability(logits, target)
    w = p / (gamma + (1 - gamma) * p)
    threshold = float(w.min()) / 2  # no sample clamped
    grads = []
    for thr in (threshold, 0.0):
        x = logits.clone().requires_grad_(True)
        TaiLrLoss(gamma=gamma, threshold=thr, reduction="sum")(x, target).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_threshold_form_clamps_the_weight_of_unlikely_samples_to_threshold():
    gamma, threshold = 0.5, 0.6
    logits, target = batch(seed=3)
    logits = logits.double().requires_grad_(True)
    values = TaiLrLoss(gamma=gamma, threshold=threshold, reduction="none")(logits, target)
    values.sum().backward()
    softmax = logits.detach().softmax(-1)
    p = softmax.gather(1, target[:, None])
    w = (p / (gamma + (1 - gamma) * p)).clamp_min(threshold)
    assert bool((p / (gamma + (1 - gamma) * p) < threshold).any())  # some samples are clamped
    torch.testing.assert_close(values, (-w * p.log()).squeeze(1))
    torch.testing.assert_close(logits.grad, w * (softmax - F.one_hot(target, C)))


def test_gamma_changed_between_steps_takes_effect():
    logits, target = batch()
    loss = TaiLrLoss()
    at_zero = loss(logits, target)
    loss.gamma = 0.5
    torch.testing.assert_close(loss(logits, target), TaiLrLoss(gamma=0.5)(logits, target))
    assert not torch.allclose(at_zero, loss(logits, target))
