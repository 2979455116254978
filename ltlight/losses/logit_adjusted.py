"""Prior-shifted cross-entropy: logit-adjusted loss and balanced softmax."""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, float_logits


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
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    requires_class_counts = True
    count_constants = ("logit_offset",)

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        tau: float = 1.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight, reduction, class_counts, ignore_index)
        self.tau = check_range("tau", tau, 0.0)

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        """The offset ``τ·log π``."""
        return {"logit_offset": self.tau * torch.log(counts / counts.sum())}

    def cross_entropy_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        """``z + τ·log π``; the base class takes its cross-entropy with torch's kernel."""
        self._counts_for(logits)
        z = float_logits(logits)
        return z + self.logit_offset.to(z.dtype)

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
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(class_counts, 1.0, weight, reduction, ignore_index)

    def extra_repr(self) -> str:
        return LongTailLoss.extra_repr(self)
