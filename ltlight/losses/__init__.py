"""Losses for long-tailed classification.

Every loss is a :class:`LongTailLoss`: it computes per-sample values, and the base class applies
the per-class ``weight`` and the ``reduction`` exactly as ``F.cross_entropy(weight=...)`` does.
"""

from ltlight.losses.asymmetric import AsymmetricLoss
from ltlight.losses.base import LongTailLoss
from ltlight.losses.bce import BinaryCrossEntropyLoss
from ltlight.losses.ce import CrossEntropyLoss
from ltlight.losses.distribution_balanced import DistributionBalancedLoss
from ltlight.losses.focal import FocalLoss, SigmoidFocalLoss
from ltlight.losses.ghm import GHMCLoss
from ltlight.losses.label_aware_smoothing import LabelAwareSmoothingLoss
from ltlight.losses.ldam import LDAMHingeLoss, LDAMLoss
from ltlight.losses.logit_adjusted import BalancedSoftmaxLoss, LogitAdjustedLoss
from ltlight.losses.tailr import TaiLrLoss
from ltlight.losses.weights import effective_number, inverse_frequency

__all__ = [
    "AsymmetricLoss",
    "BalancedSoftmaxLoss",
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "DistributionBalancedLoss",
    "FocalLoss",
    "GHMCLoss",
    "LDAMHingeLoss",
    "LDAMLoss",
    "LabelAwareSmoothingLoss",
    "LogitAdjustedLoss",
    "LongTailLoss",
    "SigmoidFocalLoss",
    "TaiLrLoss",
    "effective_number",
    "inverse_frequency",
]
