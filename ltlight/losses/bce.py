"""Binary cross-entropy on independent sigmoids, the multi-label baseline, per-class weights."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.losses.base import LongTailLoss, dense_target, float_logits


class BinaryCrossEntropyLoss(LongTailLoss):
    """Per element ``ℓ_ic = −[p_c·y_ic·log σ(x_ic) + (1 − y_ic)·log(1 − σ(x_ic))]``.

    ``x`` the logits, ``y`` the targets — float ``(N, C)`` (NaN: unknown, left out) or class
    indices ``(N,)``, one-hot encoded — and ``p_c`` an optional weight of class ``c``'s positives
    (``pos_weight``, torch's ``BCEWithLogitsLoss`` argument; 1 by default). The per-class
    ``weight`` (length C, settable later: :class:`~ltlight.callbacks.DeferredReweighting` sets
    it) multiplies ``ℓ_ic``; ``"mean"`` is the mean over the known elements. It equals
    ``torch.nn.BCEWithLogitsLoss(weight=w, pos_weight=p)`` for every reduction when no target is
    unknown.

    Args:
        pos_weight: per-class weight of the positive term (length C, each ≥ 0), or ``None``.
        weight: per-class weight on the last axis (length C) or ``None``.
        reduction: ``"mean"`` (over known elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
        ignore_index: with class-index targets, a value whose samples (rows) contribute nothing.

    Example:
        >>> import torch
        >>> loss = BinaryCrossEntropyLoss()
        >>> round(float(loss(torch.zeros(2, 3), torch.tensor([[1.0, 0, float("nan")]] * 2))), 4)
        0.6931
    """

    multi_label = True

    def __init__(
        self,
        pos_weight: Sequence[float] | None = None,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
            if pos_weight.dim() != 1 or not bool(
                torch.all(torch.isfinite(pos_weight) & (pos_weight >= 0))
            ):
                raise ValueError(
                    f"pos_weight must be None or one finite value >= 0 per class, "
                    f"got {pos_weight.tolist()}"
                )
        # A constructor argument, not state: non-persistent, so checkpoints do not depend on it.
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        x = float_logits(logits)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(x.dtype)
        return F.binary_cross_entropy_with_logits(
            x, dense_target(x, target), pos_weight=pos_weight, reduction="none"
        )
