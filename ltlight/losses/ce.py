"""Plain softmax cross-entropy, the reference every other softmax loss is measured against."""

import torch.nn.functional as F
from torch import Tensor

from ltlight.losses.base import LongTailLoss, float_logits


class CrossEntropyLoss(LongTailLoss):
    """Softmax cross-entropy ``ℓ_i = −log softmax(z_i)_{y_i}``.

    With a per-class ``weight`` and any ``reduction`` it equals ``F.cross_entropy(weight=...)``;
    re-weighting schedules (class-balanced, DRW) set ``loss.weight`` on this class.

    Args:
        weight: per-class weight ``w`` (length C) or ``None``; settable later.
        reduction: ``"mean"`` (weighted mean ``Σ w_y ℓ_i / Σ w_y``), ``"sum"`` or ``"none"``.
    """

    def __init__(self, weight: Tensor | list[float] | None = None, reduction: str = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(float_logits(logits), target, reduction="none")
