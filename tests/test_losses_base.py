"""The loss base class: weight as a buffer, class counts through its constructor, ignore_index.

``ignore_index`` is checked against ``F.cross_entropy(weight=..., ignore_index=...)`` itself and,
for every loss, against the same loss on the kept samples only — what torch's rule means.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.losses import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    LDAMHingeLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LongTailLoss,
    SigmoidFocalLoss,
    TaiLrLoss,
)

COUNTS = [50, 20, 9, 4, 1]
C = len(COUNTS)
WEIGHT = [0.5, 1.0, 2.0, 3.0, 4.0]


def every_loss(ignore_index: int = -100, weight: list[float] | None = None) -> list[LongTailLoss]:
    common = {"ignore_index": ignore_index, "weight": weight}
    return [
        CrossEntropyLoss(**common),
        LDAMLoss(COUNTS, **common),
        LDAMHingeLoss(COUNTS, **common),
        FocalLoss(**common),
        FocalLoss(gamma=0.5, alpha=[0.25, 0.5, 0.75, 1.0, 1.0], **common),
        TaiLrLoss(gamma=0.5, **common),
        TaiLrLoss(gamma=0.5, threshold=0.1, **common),
        LogitAdjustedLoss(COUNTS, **common),
        BalancedSoftmaxLoss(COUNTS, **common),
        SigmoidFocalLoss(**common),
        GHMCLoss(**common),
        GHMCLoss(bins=11, **common),
    ]


def batch(n: int = 9, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, generator=gen) * 2, torch.randint(0, C, (n,), generator=gen)


# -- ignore_index -------------------------------------------------------------------------------


def test_cross_entropy_ignores_minus_100_like_torch():
    x = torch.tensor([[0.5, -1.0, 2.0, 0.0, 1.0, -0.5]]).repeat(4, 1) * torch.arange(1, 5)[:, None]
    target = torch.tensor([0, 3, -100, 5])
    expected = F.cross_entropy(x, target)  # ignores the −100 and divides by 3
    torch.testing.assert_close(CrossEntropyLoss()(x, target), expected)
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    torch.testing.assert_close(
        CrossEntropyLoss(weight=weight)(x, target), F.cross_entropy(x, target, weight=weight)
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 255, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_equals_torch_with_ignore_index(reduction, ignore_index, weighted):
    logits, target = batch()
    target[[1, 4, 5]] = ignore_index
    weight = torch.tensor(WEIGHT) if weighted else None
    loss = CrossEntropyLoss(weight=weight, reduction=reduction, ignore_index=ignore_index)
    expected = F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )
    torch.testing.assert_close(loss(logits, target), expected)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("ignore_index", [-100, 255])
@pytest.mark.parametrize("index", range(12))
def test_every_loss_ignores_samples_exactly_as_if_they_were_absent(index, ignore_index, weighted):
    weight = WEIGHT if weighted else None
    logits, target = batch()
    ignored = torch.tensor([1, 4, 5])
    kept = torch.ones(len(target), dtype=torch.bool)
    kept[ignored] = False
    target_with_ignored = target.clone()
    target_with_ignored[ignored] = ignore_index
    for reduction in ("mean", "sum", "none"):
        loss = every_loss(ignore_index, weight)[index]
        loss.reduction = reduction
        reference = every_loss(ignore_index, weight)[index]
        reference.reduction = reduction

        x = logits.clone().requires_grad_(True)
        value = loss(x, target_with_ignored)
        x_kept = logits[kept].clone().requires_grad_(True)
        expected = reference(x_kept, target[kept])
        if reduction == "none":
            torch.testing.assert_close(value[kept], expected)
            assert torch.all(value[~kept] == 0), type(loss).__name__
            value, expected = value.sum(), expected.sum()
        else:
            torch.testing.assert_close(value, expected)
        (grad,) = torch.autograd.grad(value, x)
        (grad_kept,) = torch.autograd.grad(expected, x_kept)
        torch.testing.assert_close(grad[kept], grad_kept)
        assert torch.all(grad[~kept] == 0)


@pytest.mark.parametrize("index", range(9))  # the softmax family
def test_a_batch_of_ignored_samples_gives_nan_mean_like_torch(index):
    logits, _ = batch(4)
    target = torch.full((4,), -100)
    assert math.isnan(F.cross_entropy(logits, target))
    assert math.isnan(every_loss()[index](logits, target))


def test_ignore_index_must_be_an_integer():
    with pytest.raises(ValueError, match=r"ignore_index must be an integer, got 1.5"):
        CrossEntropyLoss(ignore_index=1.5)


def test_ghm_counts_leave_ignored_rows_out_of_the_ema():
    logits, target = batch(16)
    with_ignored = target.clone()
    with_ignored[:5] = -100
    a, b = GHMCLoss(momentum=0.5), GHMCLoss(momentum=0.5)
    a(logits, with_ignored)
    b(logits[5:], target[5:])
    torch.testing.assert_close(a.ema_counts, b.ema_counts)
    assert a.ema_counts.sum() == 11 * C * 0.5


# -- weight: a buffer that moves with the module ------------------------------------------------


def test_weight_is_a_buffer_that_moves_with_to_and_double():
    loss = CrossEntropyLoss(weight=WEIGHT)
    assert "_weight" in dict(loss.named_buffers())
    assert loss.double().weight.dtype == torch.float64
    assert loss.to("meta").weight.device.type == "meta"
    # set after the move: lands on the module's device and dtype, not in the next forward
    moved = CrossEntropyLoss().to("meta").double()
    moved.weight = WEIGHT
    assert moved.weight.device.type == "meta" and moved.weight.dtype == torch.float64
    moved.weight = None
    assert moved.weight is None


def test_weight_stays_out_of_checkpoints_so_drw_state_never_conflicts():
    # DRW re-applies its weight from the epoch at every (re)start; a checkpoint made after the
    # switch must load into a fresh, unweighted loss and vice versa.
    weighted, plain = CrossEntropyLoss(weight=WEIGHT), CrossEntropyLoss()
    assert "_weight" not in weighted.state_dict()
    plain.load_state_dict(weighted.state_dict())
    weighted.load_state_dict(plain.state_dict())
    assert weighted.weight.tolist() == WEIGHT and plain.weight is None


def test_weight_under_half_precision_module_stays_float32():
    loss = CrossEntropyLoss().to(torch.bfloat16)
    loss.weight = [1.0, 1.0 + 2**-12]  # would round to 1.0 in bf16
    assert loss.weight.dtype == torch.float32
    assert loss.weight[1] > 1.0


# -- class counts through the base constructor --------------------------------------------------


class ScaledPrior(LongTailLoss):
    """A user's loss: ``CE(z + scale·log n)``, its constant derived from the counts."""

    requires_class_counts = True
    count_constants = ("log_counts",)

    def __init__(self, class_counts: list[int] | None = None, scale: float = 2.0) -> None:
        super().__init__(class_counts=class_counts)
        self.scale = scale  # set after the base constructor, yet used to derive the constant

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        return {"log_counts": self.scale * counts.log()}

    def cross_entropy_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        self._counts_for(logits)
        return logits + self.log_counts


def test_a_subclass_passes_class_counts_through_the_base_constructor():
    logits, target = batch()
    expected = F.cross_entropy(logits.double() + 2.0 * torch.tensor(COUNTS).double().log(), target)
    by_constructor = ScaledPrior(COUNTS)
    torch.testing.assert_close(by_constructor(logits, target).double(), expected)
    late = ScaledPrior()
    late.set_class_counts(COUNTS)
    torch.testing.assert_close(late(logits, target), by_constructor(logits, target))
    assert ScaledPrior(COUNTS).double().log_counts.dtype == torch.float64
    assert "log_counts" not in by_constructor.state_dict()


def test_a_subclass_without_counts_says_how_to_give_them():
    logits, target = batch()
    with pytest.raises(RuntimeError, match=r"ScaledPrior needs the training class counts"):
        ScaledPrior()(logits, target)
