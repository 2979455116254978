"""Every loss against its paper's formula, written again here in float64 with plain loops.

Each reference computes the unweighted per-sample loss ``ℓ_i`` (``ℓ_ic`` for sigmoid losses);
``reduce`` applies the per-class weight and reduction the way ``F.cross_entropy(weight=...)``
does. The losses run on float32 logits, as in training.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ltlight.losses import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    LDAMHingeLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
    TaiLrLoss,
)

COUNTS = [50, 20, 9, 4, 1]
C = len(COUNTS)
N = 9
WEIGHT = [0.2, 0.5, 1.0, 2.0, 4.0]
REDUCTIONS = ["none", "sum", "mean"]


def batch(scale: float = 2.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=gen) * scale
    target = torch.arange(N) % C  # every class present, the rarest included
    return logits, target


def reduce(per_sample: list[float], target: list[int], weight, reduction: str) -> torch.Tensor:
    w = [1.0 if weight is None else weight[y] for y in target]
    weighted = [wi * li for wi, li in zip(w, per_sample, strict=True)]
    if reduction == "none":
        return torch.tensor(weighted, dtype=torch.float64)
    if reduction == "sum":
        return torch.tensor(sum(weighted), dtype=torch.float64)
    return torch.tensor(sum(weighted) / sum(w), dtype=torch.float64)


def reduce_elements(per_element: list[list[float]], weight, reduction: str) -> torch.Tensor:
    w = [1.0] * C if weight is None else weight
    weighted = [[w[c] * row[c] for c in range(C)] for row in per_element]
    if reduction == "none":
        return torch.tensor(weighted, dtype=torch.float64)
    total = sum(sum(row) for row in weighted)
    count = sum(len(row) for row in weighted)
    return torch.tensor(total if reduction == "sum" else total / count, dtype=torch.float64)


def softmax_row(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def cross_entropy_row(row: list[float], y: int) -> float:
    top = max(row)
    return -(row[y] - top - math.log(sum(math.exp(v - top) for v in row)))


def ldam_margins(counts: list[int], max_m: float) -> list[float]:
    raw = [1.0 / n**0.25 for n in counts]
    return [max_m * r / max(raw) for r in raw]


# -- references ---------------------------------------------------------------------------------


def ref_ce(z, y):
    return cross_entropy_row(z, y)


def ref_ldam(z, y, max_m=0.5, s=30.0):
    delta = ldam_margins(COUNTS, max_m)[y]
    # −log(e^{s(z_y − Δ_y)} / (e^{s(z_y − Δ_y)} + Σ_{j≠y} e^{s z_j}))
    target_term = math.exp(s * (z[y] - delta))
    others = sum(math.exp(s * z[j]) for j in range(len(z)) if j != y)
    return -math.log(target_term / (target_term + others))


def ref_ldam_hinge(z, y, max_m=0.5):
    delta = ldam_margins(COUNTS, max_m)[y]
    return max(max(z[j] for j in range(len(z)) if j != y) - z[y] + delta, 0.0)


def ref_focal(z, y, gamma=2.0, alpha=None):
    p_t = softmax_row(z)[y]
    alpha_t = 1.0 if alpha is None else alpha[y]
    return -alpha_t * (1.0 - p_t) ** gamma * math.log(p_t)


def ref_tailr(z, y, gamma):
    p = softmax_row(z)[y]
    if gamma == 1.0:
        return 1.0 - p
    return -math.log(gamma + (1.0 - gamma) * p) / (1.0 - gamma)


def ref_tailr_threshold(z, y, gamma, threshold):
    p = softmax_row(z)[y]
    w = max(p / (gamma + (1.0 - gamma) * p), threshold)
    return -w * math.log(p)


def ref_logit_adjusted(z, y, tau=1.0):
    total = sum(COUNTS)
    return cross_entropy_row([z[j] + tau * math.log(COUNTS[j] / total) for j in range(C)], y)


def ref_balanced_softmax(z, y):
    return cross_entropy_row([z[j] + math.log(COUNTS[j]) for j in range(C)], y)


SOFTMAX_CASES = {
    "ce": (lambda: CrossEntropyLoss, ref_ce, 2.0),
    "ldam": (lambda: lambda **kw: LDAMLoss(COUNTS, **kw), ref_ldam, 0.3),
    "ldam_m1_s10": (
        lambda: lambda **kw: LDAMLoss(COUNTS, max_m=1.0, s=10.0, **kw),
        lambda z, y: ref_ldam(z, y, max_m=1.0, s=10.0),
        0.5,
    ),
    "ldam_hinge": (lambda: lambda **kw: LDAMHingeLoss(COUNTS, **kw), ref_ldam_hinge, 1.0),
    "focal": (lambda: FocalLoss, ref_focal, 2.0),
    "focal_gamma_half_alpha": (
        lambda: lambda **kw: FocalLoss(gamma=0.5, alpha=[0.1, 0.2, 0.3, 0.4, 0.5], **kw),
        lambda z, y: ref_focal(z, y, gamma=0.5, alpha=[0.1, 0.2, 0.3, 0.4, 0.5]),
        2.0,
    ),
    "focal_gamma0": (
        lambda: lambda **kw: FocalLoss(gamma=0.0, **kw),
        lambda z, y: ref_focal(z, y, gamma=0.0),
        2.0,
    ),
    "tailr_0.3": (
        lambda: lambda **kw: TaiLrLoss(gamma=0.3, **kw),
        lambda z, y: ref_tailr(z, y, 0.3),
        2.0,
    ),
    "tailr_0.9": (
        lambda: lambda **kw: TaiLrLoss(gamma=0.9, **kw),
        lambda z, y: ref_tailr(z, y, 0.9),
        2.0,
    ),
    "tailr_1": (
        lambda: lambda **kw: TaiLrLoss(gamma=1.0, **kw),
        lambda z, y: ref_tailr(z, y, 1.0),
        2.0,
    ),
    "tailr_threshold": (
        lambda: lambda **kw: TaiLrLoss(gamma=0.6, threshold=0.4, **kw),
        lambda z, y: ref_tailr_threshold(z, y, 0.6, 0.4),
        2.0,
    ),
    "logit_adjusted": (
        lambda: lambda **kw: LogitAdjustedLoss(COUNTS, **kw),
        ref_logit_adjusted,
        2.0,
    ),
    "logit_adjusted_tau2": (
        lambda: lambda **kw: LogitAdjustedLoss(COUNTS, tau=2.0, **kw),
        lambda z, y: ref_logit_adjusted(z, y, tau=2.0),
        2.0,
    ),
    "balanced_softmax": (
        lambda: lambda **kw: BalancedSoftmaxLoss(COUNTS, **kw),
        ref_balanced_softmax,
        2.0,
    ),
}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", list(SOFTMAX_CASES))
def test_softmax_loss_matches_its_paper_formula_in_float64(case, reduction, weighted):
    factory, reference, scale = SOFTMAX_CASES[case]
    logits, target = batch(scale)
    weight = WEIGHT if weighted else None
    loss = factory()(weight=weight, reduction=reduction)
    per_sample = [
        reference(row, y) for row, y in zip(logits.double().tolist(), target.tolist(), strict=True)
    ]
    expected = reduce(per_sample, target.tolist(), weight, reduction)
    got = loss(logits, target)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_equals_torch_cross_entropy_with_weight(reduction, weighted):
    logits, target = batch()
    weight = torch.tensor(WEIGHT) if weighted else None
    ours = CrossEntropyLoss(weight=weight, reduction=reduction)(logits, target)
    torch.testing.assert_close(
        ours, F.cross_entropy(logits, target, weight=weight, reduction=reduction)
    )


def test_ldam_margin_of_rarest_class_is_max_m_and_scales_as_n_to_minus_quarter():
    loss = LDAMLoss(COUNTS, max_m=0.5)
    margins = loss.margins.double()
    assert math.isclose(float(margins[COUNTS.index(min(COUNTS))]), 0.5, rel_tol=1e-7)
    assert math.isclose(float(margins.max()), 0.5, rel_tol=1e-7)
    for j, n in enumerate(COUNTS):  # Δ_j · n_j^{1/4} is one constant C
        assert math.isclose(float(margins[j]) * n**0.25, 0.5 * min(COUNTS) ** 0.25, rel_tol=1e-6)
    assert torch.all(margins[:-1] < margins[1:])  # tail classes get larger margins


def test_ldam_with_zero_logit_gap_is_cross_entropy_of_the_margin_shifted_scaled_logits():
    logits, target = batch(0.3)
    margins = torch.tensor(ldam_margins(COUNTS, 0.5))
    shifted = 30.0 * (logits - F.one_hot(target, C) * margins[target, None])
    torch.testing.assert_close(
        LDAMLoss(COUNTS)(logits, target), F.cross_entropy(shifted, target), rtol=1e-5, atol=1e-6
    )


def test_focal_p_t_comes_from_the_unweighted_softmax():
    # The official LDAM-DRW focal loss takes p_t = exp(−weighted CE); here the class weight
    # only enters through the weighted mean: the per-sample value does not depend on it.
    logits, target = batch()
    unweighted = FocalLoss(reduction="none")(logits, target)
    weighted = FocalLoss(weight=WEIGHT, reduction="none")(logits, target)
    torch.testing.assert_close(weighted, unweighted * torch.tensor(WEIGHT)[target])


def test_balanced_softmax_equals_logit_adjustment_with_tau_one():
    logits, target = batch()
    torch.testing.assert_close(
        BalancedSoftmaxLoss(COUNTS, reduction="none")(logits, target),
        LogitAdjustedLoss(COUNTS, tau=1.0, reduction="none")(logits, target),
    )


def test_logit_adjusted_with_tau_zero_is_cross_entropy():
    logits, target = batch()
    torch.testing.assert_close(
        LogitAdjustedLoss(COUNTS, tau=0.0)(logits, target), F.cross_entropy(logits, target)
    )


# -- sigmoid focal against torchvision --------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 2.0), (0.5, 0.0), (0.75, 0.5)])
@pytest.mark.parametrize("target_kind", ["indices", "soft"])
def test_sigmoid_focal_equals_torchvision_sigmoid_focal_loss(reduction, alpha, gamma, target_kind):
    logits, target = batch(3.0)
    if target_kind == "indices":
        dense = F.one_hot(target, C).float()
    else:
        target = dense = torch.rand(N, C, generator=torch.Generator().manual_seed(3))
    ours = SigmoidFocalLoss(alpha=alpha, gamma=gamma, reduction=reduction)(logits, target)
    theirs = torchvision.ops.sigmoid_focal_loss(
        logits, dense, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sigmoid_focal_matches_its_formula_in_float64(reduction, weighted):
    logits, target = batch(3.0)
    weight = WEIGHT if weighted else None
    alpha, gamma = 0.25, 2.0
    per_element = []
    for row, y in zip(logits.double().tolist(), target.tolist(), strict=True):
        out = []
        for c, x in enumerate(row):
            t = 1.0 if c == y else 0.0
            p = 1.0 / (1.0 + math.exp(-x))
            p_t = p * t + (1 - p) * (1 - t)
            alpha_t = alpha * t + (1 - alpha) * (1 - t)
            out.append(-alpha_t * (1 - p_t) ** gamma * math.log(p_t))
        per_element.append(out)
    loss = SigmoidFocalLoss(alpha, gamma, weight=weight, reduction=reduction)
    torch.testing.assert_close(
        loss(logits, target).double(),
        reduce_elements(per_element, weight, reduction),
        rtol=1e-5,
        atol=1e-6,
    )


# -- gradients ----------------------------------------------------------------------------------

GRADCHECK_LOSSES = {
    "ce": lambda: CrossEntropyLoss(weight=WEIGHT),
    "ldam": lambda: LDAMLoss(COUNTS, s=5.0, weight=WEIGHT),
    "ldam_hinge": lambda: LDAMHingeLoss(COUNTS, weight=WEIGHT, reduction="sum"),
    "focal": lambda: FocalLoss(gamma=2.0, alpha=[0.1, 0.2, 0.3, 0.4, 0.5], weight=WEIGHT),
    "focal_gamma_half": lambda: FocalLoss(gamma=0.5, reduction="sum"),
    "sigmoid_focal": lambda: SigmoidFocalLoss(weight=WEIGHT),
    "sigmoid_focal_gamma_half": lambda: SigmoidFocalLoss(alpha=None, gamma=0.5),
    "ghm": lambda: GHMCLoss(bins=10, weight=WEIGHT),
    "ghm_momentum_eval": lambda: GHMCLoss(bins=10, momentum=0.75).eval(),
    "tailr_0": lambda: TaiLrLoss(0.0, weight=WEIGHT),
    "tailr_0.5": lambda: TaiLrLoss(0.5, weight=WEIGHT),
    "tailr_1": lambda: TaiLrLoss(1.0, reduction="sum"),
    "logit_adjusted": lambda: LogitAdjustedLoss(COUNTS, tau=1.5, weight=WEIGHT),
    "balanced_softmax": lambda: BalancedSoftmaxLoss(COUNTS, reduction="none"),
}


# TaiLr's thresholded form is left out on purpose: its weight is held constant (stop-gradient),
# so its gradient is by design not the derivative of its value; test_losses_tailr checks it
# against the γ-CE gradient instead.
@pytest.mark.parametrize("name", list(GRADCHECK_LOSSES))
def test_analytic_gradient_matches_finite_differences_in_float64(name):
    loss = GRADCHECK_LOSSES[name]()
    logits, target = batch(1.0, seed=5)
    logits = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,), fast_mode=True)


@pytest.mark.parametrize(
    "loss", [FocalLoss(gamma=0.5), SigmoidFocalLoss(gamma=0.5)], ids=["softmax", "sigmoid"]
)
def test_focal_with_gamma_below_one_has_finite_gradient_where_p_t_rounds_to_one(loss):
    # d(1 − p_t)^γ/dp_t is infinite at p_t = 1 for γ < 1; its product with −log p_t → 0 is 0.
    logits = torch.tensor([[60.0, -60.0, -60.0], [0.5, -0.2, 0.1]], requires_grad=True)
    target = torch.tensor([0, 2])
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.all(torch.isfinite(logits.grad))
