"""Long-tail metrics: per-class, balanced and many/medium/few-shot error, calibration (ECE,
classwise ECE, NLL, Brier) overall and per shot group, and error under a shifted test prior;
multi-label: AP, mAP by head / medium / tail, AUROC, F1, label-wise ECE and Brier.

``functional`` holds the update/compute functions, ``long_tail`` the torchmetrics ``Metric`` that
accumulates them, ``prior_shift`` the test-agnostic protocol's priors, ``multilabel`` the
multi-label metrics.
"""

from ltlight.metrics.functional import (
    CALIBRATION_KEYS,
    SCALAR_KEYS,
    SHOT_GROUPS,
    balanced_error,
    check_thresholds,
    long_tail_metrics,
    shot_groups,
)
from ltlight.metrics.long_tail import LongTailMetrics
from ltlight.metrics.multilabel import (
    MAP_GROUPS,
    MULTILABEL_SCALAR_KEYS,
    MultiLabelMetrics,
    multilabel_metrics,
)
from ltlight.metrics.prior_shift import error_under_prior, shifted_prior, shifted_priors

__all__ = [
    "CALIBRATION_KEYS",
    "MAP_GROUPS",
    "MULTILABEL_SCALAR_KEYS",
    "SCALAR_KEYS",
    "SHOT_GROUPS",
    "LongTailMetrics",
    "MultiLabelMetrics",
    "balanced_error",
    "check_thresholds",
    "error_under_prior",
    "long_tail_metrics",
    "multilabel_metrics",
    "shifted_prior",
    "shifted_priors",
    "shot_groups",
]
