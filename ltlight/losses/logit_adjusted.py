"""Prior-shifted cross-entropy: logit-adjusted loss and balanced softmax."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.losses.base import LongTailLoss, check_range, float_logits


class LogitAdjustedLoss(LongTailLoss):
    """Logit-adjusted cross-entropy ``ℓ_i = CE(z_i + τ·log π, y_i)``.

    ``π_j = n_j / Σ_k n_k`` is the training class prior. Adding ``τ·log π`` during training
    only makes the model's raw logits ``z`` Fisher-consistent for the *balanced* error, so
    prediction uses the raw ``z`` (:meth:`predictive_logits` is the identity).

    Paper: Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-Tail Learning via Logit
    Adjustment", ICLR 2021. The official code (google-research/logit_adjustment) adds a 1e-12
    inside the log for empty classes; class counts here are ≥ 1, so it is not needed.

    Args:
        class_counts: training samples per class ``n_j``, or ``None`` to set later with
            :meth:`set_class_counts` (:class:`~ltlight.LongTailModule` does this).
        tau: temperature ``τ`` ≥ 0 of the adjustment; paper 1 (0 is cross-entropy).
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
    """

    requires_class_counts = True

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        tau: float = 1.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight=weight, reduction=reduction)
        self.tau = check_range("tau", tau, 0.0)
        self._register_derived("logit_offset")
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Set ``n_j`` and derive the offset ``τ·log π``."""
        super().set_class_counts(class_counts)
        counts = self.class_counts.to(torch.float64)
        self._set_derived("logit_offset", self.tau * torch.log(counts / counts.sum()))

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        self._counts_for(logits)
        z = float_logits(logits)
        offset = self.logit_offset.to(device=z.device, dtype=z.dtype)
        return F.cross_entropy(z + offset, target, reduction="none")

    def extra_repr(self) -> str:
        return f"tau={self.tau}, {super().extra_repr()}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax ``ℓ_i = CE(z_i + log n, y_i)``, ``n`` the training class counts.

    ``log n`` and ``log π`` differ by the constant ``log Σ n``, which the softmax ignores, so
    this is :class:`LogitAdjustedLoss` with ``τ = 1`` (it is derived from a different argument:
    the softmax of ``z + log n`` estimates the label distribution of the long-tailed training
    set when ``z`` estimates the balanced one). Prediction uses the raw ``z``.

    Paper: Ren, Yu, Sheng, Ma, Zhao, Yi, Li, "Balanced Meta-Softmax for Long-Tailed Visual
    Recognition", NeurIPS 2020. The official code adds ``log n`` (not ``log π``); the values
    are identical.

    Args:
        class_counts: training samples per class ``n_j``, or ``None`` to set later.
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts=class_counts, tau=1.0, weight=weight, reduction=reduction)

    def extra_repr(self) -> str:
        return LongTailLoss.extra_repr(self)
