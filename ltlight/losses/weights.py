"""Per-class weights from class counts, for re-weighting (class-balanced losses, DRW).

Both are normalised to sum to the number of classes, as the official class-balanced and
LDAM-DRW code do; with the weighted-mean reduction only their ratios matter. The arithmetic is
float64 (``β^n`` with ``β = 0.9999`` needs it); the result is float32.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_class_counts, check_range


def _normalised(weights: Tensor) -> Tensor:
    return (weights * (weights.numel() / weights.sum())).to(torch.float32)


def inverse_frequency(class_counts: Sequence[int] | Tensor) -> Tensor:
    """Inverse-frequency weights ``w_j ∝ 1 / n_j``, normalised so ``Σ_j w_j = C``.

    Args:
        class_counts: training samples per class ``n_j``, positive integers.

    Returns:
        float32 tensor of shape ``(C,)``.
    """
    counts = check_class_counts(class_counts).to(torch.float64)
    return _normalised(counts.reciprocal())


def effective_number(class_counts: Sequence[int] | Tensor, beta: float = 0.9999) -> Tensor:
    """Class-balanced weights ``w_j ∝ (1 − β) / (1 − β^{n_j})``, normalised so ``Σ_j w_j = C``.

    ``(1 − β^n) / (1 − β)`` is the *effective number* of samples of a class (Cui et al., "Class-
    Balanced Loss Based on Effective Number of Samples", CVPR 2019); ``β → 0`` gives equal
    weights, ``β → 1`` inverse frequency. ``β = 0.9999`` is what the official LDAM-DRW code uses
    for DRW. ``1 − β^n`` is computed as ``−expm1(n·log β)``, exact also for ``β`` very close to 1.

    Args:
        class_counts: training samples per class ``n_j``, positive integers.
        beta: ``β`` in (0, 1).

    Returns:
        float32 tensor of shape ``(C,)``.
    """
    beta = check_range("beta", beta, 0.0, 1.0, low_open=True, high_open=True)
    counts = check_class_counts(class_counts).to(torch.float64)
    effective = -torch.expm1(counts * math.log(beta))
    return _normalised((1.0 - beta) / effective)
