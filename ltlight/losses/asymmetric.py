"""Asymmetric loss (ASL): focal down-weighting that treats positives and negatives apart, and
shifts the negatives' probability (Ben-Baruch et al., ICCV 2021)."""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, dense_target, float_logits


class AsymmetricLoss(LongTailLoss):
    """Per element, with ``p = σ(x)`` and the shifted negative probability
    ``p_m = min(1, 1 − p + m)``:

        ``ℓ = −[y·(1 − p)^{γ+}·log p + (1 − y)·(1 − p_m)^{γ−}·log p_m]``

    i.e. the focusing weight is ``(1 − p_t)^{γ_t}`` with ``p_t = p``, ``γ_t = γ+`` for a positive
    and ``p_t = p_m``, ``γ_t = γ−`` for a negative: ``γ− > γ+`` down-weights the many easy
    negatives more than the few positives, and the margin ``m`` (``clip``) discards negatives with
    ``p ≤ m`` altogether (``p_m = 1``: zero loss). The logs are of ``max(·, eps)``. Targets are
    float ``(N, C)`` (NaN: unknown, left out; values in between work as in the official code) or
    class indices ``(N,)``, one-hot encoded; a per-class ``weight`` multiplies ``ℓ_ic``.

    Paper: Ben-Baruch, Ridnik, Zamir, Noy, Friedman, Protter, Zelnik-Manor, "Asymmetric Loss For
    Multi-Label Classification", ICCV 2021; defaults γ− = 4, γ+ = 1, m = 0.05, eps = 1e-8 from
    the official ``AsymmetricLoss`` (Alibaba-MIIL/ASL, ``src/loss_functions/losses.py``).
    Gradient: by default, as the official ``AsymmetricLoss`` (``disable_torch_grad_focal_loss=
    True``), the focusing weight is a constant to autograd — the gradient is
    ``w·∂(CE term)/∂x``, not the derivative of ``ℓ``; ``detach_focusing_weight=False`` gives the
    full derivative (the official ``AsymmetricLossOptimized``). Where it deviates: the official
    code returns the sum over all elements; here ``reduction`` decides (``"sum"`` is the
    official value, ``"mean"`` that over ``N·C`` elements).

    Args:
        gamma_neg: ``γ−`` ≥ 0, the negatives' focusing parameter; paper 4.
        gamma_pos: ``γ+`` ≥ 0, the positives' focusing parameter; paper 1 (the official training
            script: 0).
        clip: the probability margin ``m`` in [0, 1) shifting the negatives; 0 turns it off.
        eps: floor of the probabilities inside the logs, in (0, 1).
        detach_focusing_weight: no gradient through ``(1 − p_t)^{γ_t}`` (official default).
        weight: per-class weight on the last axis (length C) or ``None``.
        reduction: ``"mean"`` (over known elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
        ignore_index: with class-index targets, a value whose samples (rows) contribute nothing.

    Example:
        >>> import torch
        >>> loss = AsymmetricLoss(reduction="sum")
        >>> # p = 0.5: 0.5·log 2 for the positive, p_m = 0.55: 0.45⁴·(−log 0.55) for the negative
        >>> round(float(loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))), 4)
        0.3711
    """

    multi_label = True

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        detach_focusing_weight: bool = True,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.gamma_neg = check_range("gamma_neg", gamma_neg, 0.0)
        self.gamma_pos = check_range("gamma_pos", gamma_pos, 0.0)
        self.clip = check_range("clip", clip, 0.0, 1.0, high_open=True)
        self.eps = check_range("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
        self.detach_focusing_weight = bool(detach_focusing_weight)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        x = float_logits(logits)
        y = dense_target(x, target)
        p = torch.sigmoid(x)
        p_neg = 1 - p  # p_m = min(1, 1 − p + m)
        if self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1)
        loss = -(y * p.clamp(min=self.eps).log() + (1 - y) * p_neg.clamp(min=self.eps).log())
        if self.gamma_neg == 0 and self.gamma_pos == 0:
            return loss
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach_focusing_weight):
            one_minus_p_t = 1 - (p * y + p_neg * (1 - y))
            if not self.detach_focusing_weight:  # (0)^γ for 0 < γ < 1 has an infinite slope
                one_minus_p_t = one_minus_p_t.clamp_min(torch.finfo(x.dtype).tiny)
            gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            focusing = one_minus_p_t.pow(gamma)
        return loss * focusing

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"detach_focusing_weight={self.detach_focusing_weight}, {super().extra_repr()}"
        )
