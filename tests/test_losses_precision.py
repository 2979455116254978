"""Losses under mixed precision: bf16 autocast and fp16 logits stay finite and accurate."""

import pytest
import torch
import torch.nn.functional as F

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

COUNTS = [500, 120, 40, 9, 2]
C = len(COUNTS)

LOSSES = {
    "ldam_s30": lambda: LDAMLoss(COUNTS, s=30.0),
    "ldam_hinge": lambda: LDAMHingeLoss(COUNTS),
    "tailr_near_1": lambda: TaiLrLoss(gamma=1 - 1e-7),
    "tailr_1": lambda: TaiLrLoss(gamma=1.0),
    "tailr_0.5_threshold": lambda: TaiLrLoss(gamma=0.5, threshold=0.2),
    "ghm": lambda: GHMCLoss(momentum=0.75),
    "ce": lambda: CrossEntropyLoss(weight=[1.0, 2.0, 3.0, 4.0, 5.0]),
    "focal": lambda: FocalLoss(gamma=0.5),
    "sigmoid_focal": lambda: SigmoidFocalLoss(gamma=0.5),
    "logit_adjusted": lambda: LogitAdjustedLoss(COUNTS),
    "balanced_softmax": lambda: BalancedSoftmaxLoss(COUNTS),
}


def cosine_head(n: int = 64, seed: int = 0):
    """Features and a NormedLinear-style head: logits are cosines in [−1, 1], as LDAM is used."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 16, generator=gen)
    weight = torch.randn(C, 16, generator=gen).requires_grad_(True)
    target = torch.randint(0, C, (n,), generator=gen)
    return features, weight, target


@pytest.mark.parametrize("name", list(LOSSES))
def test_bf16_autocast_on_cpu_gives_finite_loss_and_gradients_equal_to_float32(name):
    features, weight, target = cosine_head()
    loss = LOSSES[name]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(F.normalize(features, dim=1), F.normalize(weight, dim=1))
        assert logits.dtype == torch.bfloat16
        value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.all(torch.isfinite(weight.grad))
    # the loss upcasts: the same bf16 logits in float32 give the same value
    reference = LOSSES[name]()(logits.detach().float(), target)
    torch.testing.assert_close(value.float(), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["ldam_s30", "tailr_near_1", "tailr_1", "ghm", "focal"])
def test_fp16_logits_with_large_gaps_give_finite_float32_loss_and_gradient(name):
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(32, C, generator=gen) * 8).half().requires_grad_(True)
    target = torch.randint(0, C, (32,), generator=gen)
    value = LOSSES[name]()(logits, target)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value) and torch.all(torch.isfinite(logits.grad))
    torch.testing.assert_close(value, LOSSES[name]()(logits.detach().float(), target))


def test_ldam_with_s30_on_bf16_cosines_matches_the_float64_formula():
    features, weight, target = cosine_head(seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = F.linear(F.normalize(features, dim=1), F.normalize(weight, dim=1))
        value = LDAMLoss(COUNTS, s=30.0, reduction="none")(logits, target)
    z = logits.detach().double()
    raw = torch.tensor(COUNTS, dtype=torch.float64) ** -0.25
    margins = raw * (0.5 / raw.max())
    shifted = 30.0 * (z - F.one_hot(target, C) * margins[target, None])
    expected = F.cross_entropy(shifted, target, reduction="none")
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
