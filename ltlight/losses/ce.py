"""Plain softmax cross-entropy, the reference every other softmax loss is measured against."""

from collections.abc import Sequence

from torch import Tensor

from ltlight.losses.base import LongTailLoss


class CrossEntropyLoss(LongTailLoss):
    """Softmax cross-entropy ``ℓ_i = −log softmax(z_i)_{y_i}``.

    With a per-class ``weight``, ``ignore_index`` and any ``reduction`` it *is*
    ``F.cross_entropy(weight=..., ignore_index=...)`` (the base class calls it); re-weighting
    schedules (class-balanced, DRW) set ``loss.weight`` on this class.

    Args:
        weight: per-class weight ``w`` (length C) or ``None``; settable later.
        reduction: ``"mean"`` (weighted mean ``Σ w_y ℓ_i / Σ w_y``), ``"sum"`` or ``"none"``.
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
