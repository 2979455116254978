"""The long-tail metrics as a torchmetrics ``Metric``: a state machine over the sums of
:mod:`ltlight.metrics.functional` (``update`` only accumulates, ``compute`` only derives)."""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.metrics.functional import (
    long_tail_compute,
    long_tail_update,
    refuse_invalid,
    state_shapes,
)
from ltlight.metrics.shot_grouped import ShotGroupedMetric


class LongTailMetrics(ShotGroupedMetric):
    """Overall, per-class, balanced and many/medium/few-shot error, ECE and reliability bins.

    ``update(probs, target)`` takes probabilities ``(N, C)`` — the module computes
    ``softmax(loss.predictive_logits(logits))``, so calibration is measured on the logits the loss
    trains — and class indices ``(N,)``. It only accumulates sums on the probabilities' device
    (no ``.item()``, no host sync); every state is added with ``dist_reduce_fx="sum"``, so DDP
    sync is exact. ``compute()`` returns the dictionary of
    :mod:`ltlight.metrics.functional` (keys ``error``, ``balanced_error``, ``per_class_error``,
    the shot-group errors, ``ece``, ``classwise_ece``, ``nll``, ``brier``, their per-shot-group
    forms, ``per_class_calibration_error``, ``bin_confidence``, ``bin_accuracy``,
    ``bin_count``; :data:`~ltlight.metrics.SCALAR_KEYS` lists the scalar ones).

    Args:
        num_classes: ``C``.
        class_counts: training samples per class, for the shot groups; may come later through
            :meth:`set_class_counts` (the module hands over the datamodule's). Without them the
            shot-group entries are NaN.
        many_threshold: a class with more training samples than this is many-shot (default 100).
        few_threshold: a class with fewer training samples than this is few-shot (default 20).
        n_bins: equal-width confidence bins for ECE and the reliability diagram (default 15).

    Example:
        >>> import torch
        >>> metric = LongTailMetrics(3, class_counts=[200, 50, 5])
        >>> metric.update(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]), torch.tensor([0, 2]))
        >>> round(float(metric.compute()["balanced_error"]), 3)
        0.5
    """

    is_differentiable = False
    higher_is_better = False

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | None = None,
        many_threshold: int = 100,
        few_threshold: int = 20,
        n_bins: int = 15,
    ) -> None:
        super().__init__(num_classes, class_counts, many_threshold, few_threshold, n_bins)
        for name, (size, dtype) in state_shapes(num_classes, n_bins).items():
            self.add_state(name, torch.zeros(size, dtype=dtype), dist_reduce_fx="sum")

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Accumulate a batch: ``probs`` ``(N, C)`` probabilities, ``target`` ``(N,)`` indices.

        Targets outside ``[0, C)`` and rows that are not probabilities are counted here, on the
        device, and refused by :meth:`compute`.
        """
        for name, value in long_tail_update(probs, target, self.num_classes, self.n_bins).items():
            getattr(self, name).add_(value)

    def compute(self) -> dict[str, Tensor]:
        """The metric dictionary from everything accumulated since the last ``reset()``.

        Raises:
            ValueError: if any target was outside ``[0, C)`` or any row of ``probs`` was not a
                probability distribution (logits passed by mistake).
        """
        states = {name: getattr(self, name) for name in state_shapes(1, 1)}
        refuse_invalid(states, self.num_classes)
        return long_tail_compute(states, self.class_counts, self.many_threshold, self.few_threshold)
