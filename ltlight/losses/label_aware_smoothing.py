"""Label-aware smoothing (Zhong, Cui, Liu, Jia, "Improving Calibration for Long-Tailed
Recognition", CVPR 2021 — MiSLAS): label smoothing whose strength grows with the class's size."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, float_logits, index_target

SHAPES = ("concave", "linear", "convex")


class LabelAwareSmoothingLoss(LongTailLoss):
    """Cross-entropy against a smoothed target whose smoothing ``ε_y`` depends on the class.

    With ``x_y = (n_y − n_min) / (n_max − n_min)`` (0 for the rarest class, 1 for the most
    frequent) the smoothing goes from ``tail`` to ``head`` along

    * ``"concave"``: ``ε_y = tail + (head − tail)·sin(π x_y / 2)``
    * ``"linear"``:  ``ε_y = tail + (head − tail)·x_y``
    * ``"convex"``:  ``ε_y = head + (head − tail)·sin(3π/2 + π x_y / 2)``

    and ``ℓ_i = (1 − ε_y)·(−log p_y) + ε_y·(1/C)·Σ_j (−log p_j)``: the target puts
    ``1 − ε_y + ε_y/C`` on ``y`` and ``ε_y/C`` on every other class.

    This is the official code (dvlab-research/MiSLAS, ``methods.py``, ``LabelAwareSmoothing``),
    including its curves and defaults (CIFAR-100-LT, ImageNet-LT: ``head`` 0.4, ``tail`` 0.1;
    CIFAR-10-LT: 0.3, 0.0). The paper writes the target as ``1 − ε_y`` on ``y`` and
    ``ε_y/(C−1)`` elsewhere: the same family with ``ε_paper = ε·(C−1)/C``. With all classes of
    one size (``n_max = n_min``, where the official code divides by zero) every class gets
    ``head``.

    Args:
        class_counts: training samples per class ``n_j``, or ``None`` to set later (the module
            hands over the datamodule's).
        head: smoothing of the most frequent class, in [0, 1].
        tail: smoothing of the rarest class, in [0, 1].
        shape: ``"concave"``, ``"linear"`` or ``"convex"``.
        weight: per-class weight ``w`` (length C) or ``None``; settable later.
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
        ignore_index: a target value whose samples contribute nothing (torch's −100).

    Example:
        >>> import torch
        >>> loss = LabelAwareSmoothingLoss(class_counts=[100, 10, 1])
        >>> [round(e, 3) for e in loss.smoothing.tolist()]
        [0.4, 0.143, 0.1]
    """

    requires_class_counts = True
    count_constants = ("smoothing",)

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        head: float = 0.4,
        tail: float = 0.1,
        shape: str = "concave",
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight, reduction, class_counts, ignore_index)
        self.head = check_range("head", head, 0.0, 1.0)
        self.tail = check_range("tail", tail, 0.0, 1.0)
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
        self.shape = shape

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        """``ε_j`` for every class."""
        spread = counts.max() - counts.min()
        x = (counts - counts.min()) / spread if spread > 0 else torch.ones_like(counts)
        head, tail = self.head, self.tail
        if self.shape == "concave":
            smoothing = tail + (head - tail) * torch.sin(x * math.pi / 2)
        elif self.shape == "linear":
            smoothing = tail + (head - tail) * x
        else:
            smoothing = head + (head - tail) * torch.sin(1.5 * math.pi + x * math.pi / 2)
        return {"smoothing": smoothing}

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        self._counts_for(logits)
        log_p = F.log_softmax(float_logits(logits), dim=-1)
        index = index_target(target, logits.shape[-1])
        nll = -log_p.gather(1, index.unsqueeze(1)).squeeze(1)
        epsilon = self.smoothing.to(log_p.dtype).index_select(0, index)
        return (1 - epsilon) * nll - epsilon * log_p.mean(dim=-1)

    def extra_repr(self) -> str:
        return f"head={self.head}, tail={self.tail}, shape={self.shape!r}, {super().extra_repr()}"
