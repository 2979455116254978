"""Multi-label metrics: per-class AP and mAP (overall and head / medium / tail), per-class AUROC,
micro and macro F1 at the decision thresholds, and calibration of the label-wise probabilities
(ECE, Brier).

Targets are float ``(N, C)``: 1 a positive, 0 a negative, NaN unknown (left out of every
metric). AP and AUROC are torchmetrics' exact ones (``MultilabelAveragePrecision`` /
``MultilabelAUROC`` with ``average=None, thresholds=None``, unknown entries as its
``ignore_index``), equal to scikit-learn's ``average_precision_score`` per class. The
:class:`MultiLabelMetrics` state is the probabilities and targets themselves, concatenated across
processes (``dist_reduce_fx="cat"``), so the values under DDP are those of the whole split for any
split size. Head / medium / tail follow the DB-loss protocol (Wu et al., ECCV 2020): training
positives per class ``> 100``, ``20–100``, ``< 20``.
"""

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multilabel_auroc,
    multilabel_average_precision,
    multilabel_f1_score,
)
from torchmetrics.utilities import dim_zero_cat

from ltlight._lightning_internals import forget_computed
from ltlight.metrics.functional import shot_groups
from ltlight.metrics.shot_grouped import ShotGroupedMetric

#: Head / medium / tail, in the order of :func:`~ltlight.metrics.shot_groups`' indices.
MAP_GROUPS = ("head", "medium", "tail")
#: The scalar entries of :func:`multilabel_metrics` (logged as ``val/<key>``).
MULTILABEL_SCALAR_KEYS = (
    "map",
    "head_map",
    "medium_map",
    "tail_map",
    "auroc",
    "micro_f1",
    "macro_f1",
    "ece",
    "brier",
)
_UNKNOWN = -1  # torchmetrics' ignore_index for the NaN (unknown) targets


def check_multilabel(probs: Tensor, target: Tensor, num_labels: int | None = None) -> None:
    """Shapes only (no host sync): ``probs`` and ``target`` both ``(N, C)``, target float."""
    if probs.dim() != 2 or target.shape != probs.shape or not target.is_floating_point():
        raise ValueError(
            "multi-label metrics need probabilities (N, C) and float targets of the same shape "
            f"(1 positive, 0 negative, NaN unknown), got probs {tuple(probs.shape)} and target "
            f"{tuple(target.shape)} ({target.dtype})"
        )
    if num_labels is not None and probs.shape[1] != num_labels:
        raise ValueError(f"expected {num_labels} labels, got probs of shape {tuple(probs.shape)}")


def _refuse_invalid(probs: Tensor, target: Tensor) -> None:
    if not bool(torch.all((probs >= 0) & (probs <= 1))):
        raise ValueError(
            "multi-label metrics got values outside [0, 1] as probabilities: pass the sigmoids "
            "of the logits (module.predict_proba), not the logits"
        )
    known = target[~target.isnan()]
    if not bool(torch.all((known == 0) | (known == 1))):
        raise ValueError(
            f"multi-label targets must be 1, 0 or NaN (unknown), got the values "
            f"{sorted(set(known[(known != 0) & (known != 1)].tolist()))[:5]}"
        )


def label_calibration(probs: Tensor, target: Tensor, n_bins: int = 15) -> tuple[Tensor, Tensor]:
    """ECE and Brier score of the label-wise probabilities over the known entries.

    Every known ``(image, label)`` pair is one binary prediction ``p`` of "positive": ECE
    ``= Σ_b (n_b / n)·|mean_b(p) − mean_b(y)|`` over ``n_bins`` equal-width bins of ``p``;
    Brier ``= mean (p − y)²``. Float64; NaN when no entry is known.
    """
    known = ~target.isnan()
    p, y = probs.double()[known], target.double()[known]
    bins = (p * n_bins).long().clamp_(0, n_bins - 1)
    count = torch.bincount(bins, minlength=n_bins).double()
    gap = torch.bincount(bins, weights=p, minlength=n_bins) - torch.bincount(
        bins, weights=y, minlength=n_bins
    )
    ece = gap.abs().sum() / count.sum()
    return ece, (p - y).square().mean()


def multilabel_metrics(
    probs: Tensor,
    target: Tensor,
    class_counts: Sequence[int] | Tensor | None = None,
    thresholds: Tensor | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
    n_bins: int = 15,
) -> dict[str, Tensor]:
    """Every multi-label metric of a whole split (float64 scalars, per-class tensors).

    Args:
        probs: ``(N, C)`` label probabilities (the sigmoids).
        target: ``(N, C)`` float, 1 / 0 / NaN (unknown).
        class_counts: training positives per class (the head / medium / tail groups); without
            them the group mAPs are NaN.
        thresholds: ``(C,)`` decision thresholds (a label is predicted when ``p ≥ t``); 0.5 for
            every class when ``None``.
        many_threshold: a class with more training positives is "head" (100; the name of
            :class:`~ltlight.metrics.LongTailMetrics`' argument).
        few_threshold: a class with fewer training positives is "tail" (20).
        n_bins: equal-width bins of the label-wise ECE.

    Returns keys :data:`MULTILABEL_SCALAR_KEYS` and ``per_class_ap``, ``per_class_auroc``,
    ``per_class_f1``, ``positives`` (per class, in this split). A class without a positive here
    has NaN AP and AUROC and is left out of the means.
    """
    check_multilabel(probs, target)
    _refuse_invalid(probs, target)
    num_labels = probs.shape[1]
    probs = probs.float()
    labels = target.nan_to_num(_UNKNOWN).long()
    positives = labels.eq(1).sum(0)
    exact = {"num_labels": num_labels, "average": None, "ignore_index": _UNKNOWN}
    with warnings.catch_warnings():  # classes without positives: NaN below, no warning per call
        warnings.simplefilter("ignore", UserWarning)
        ap = multilabel_average_precision(probs, labels, thresholds=None, **exact).double()
        auroc = multilabel_auroc(probs, labels, thresholds=None, **exact).double()
    has_positive = positives > 0
    ap = torch.where(has_positive, ap, torch.nan)
    auroc = torch.where(has_positive, auroc, torch.nan)
    cut = torch.full((num_labels,), 0.5) if thresholds is None else thresholds.cpu().float()
    decided = (probs >= cut.to(probs.device)).float()  # ≥ t, then torchmetrics' 0.5 cut is exact
    f1 = {
        average: multilabel_f1_score(
            decided, labels, threshold=0.5, **{**exact, "average": average}
        )
        for average in (None, "micro")
    }
    ece, brier = label_calibration(probs, target, n_bins)
    results = {
        "map": ap.nanmean(),
        "auroc": auroc.nanmean(),
        "micro_f1": f1["micro"].double(),
        "macro_f1": f1[None].double()[has_positive].mean(),
        "ece": ece,
        "brier": brier,
        "per_class_ap": ap,
        "per_class_auroc": auroc,
        "per_class_f1": f1[None].double(),
        "positives": positives,
    }
    groups = None
    if class_counts is not None:
        groups = shot_groups(torch.as_tensor(class_counts), many_threshold, few_threshold)
    for index, name in enumerate(MAP_GROUPS):
        in_group = ap[groups.to(ap.device) == index] if groups is not None else ap[:0]
        results[f"{name}_map"] = (
            in_group.nanmean() if in_group.numel() else ap.new_tensor(torch.nan)
        )
    return results


class MultiLabelMetrics(ShotGroupedMetric):
    """:func:`multilabel_metrics` accumulated over a split, DDP-exact.

    ``update(probs, target)`` appends the batch (probabilities ``(N, C)``, float targets with NaN
    for unknown); ``compute()`` returns :func:`multilabel_metrics` of everything since the last
    ``reset()``, at the decision ``thresholds`` (0.5 until :meth:`set_thresholds`).

    Args:
        num_labels: ``C``.
        class_counts: training positives per class (head / medium / tail); may come later
            through :meth:`set_class_counts`.
        many_threshold: more training positives than this: "head" (100).
        few_threshold: fewer training positives than this: "tail" (20).
        n_bins: equal-width bins of the label-wise ECE (15).

    Example:
        >>> import torch
        >>> metric = MultiLabelMetrics(2, class_counts=[150, 5])
        >>> metric.update(torch.tensor([[0.9, 0.2], [0.3, 0.6]]), torch.tensor([[1.0, 0], [0, 1]]))
        >>> [round(float(metric.compute()[key]), 3) for key in ("map", "head_map", "tail_map")]
        [1.0, 1.0, 1.0]
    """

    is_differentiable = False
    higher_is_better = True

    def __init__(
        self,
        num_labels: int,
        class_counts: Sequence[int] | None = None,
        many_threshold: int = 100,
        few_threshold: int = 20,
        n_bins: int = 15,
    ) -> None:
        super().__init__(num_labels, class_counts, many_threshold, few_threshold, n_bins)
        self.thresholds: Tensor | None = None
        self.add_state("probs", [], dist_reduce_fx="cat")
        self.add_state("target", [], dist_reduce_fx="cat")

    @property
    def num_labels(self) -> int:
        """``C``, the number of labels (``num_classes`` of the base)."""
        return self.num_classes

    def set_thresholds(self, thresholds: Tensor | None) -> None:
        """The per-class decision thresholds of the F1 scores (``None``: 0.5)."""
        self.thresholds = None if thresholds is None else thresholds.detach().cpu().float()
        forget_computed(self)

    def update(self, probs: Tensor, target: Tensor) -> None:
        check_multilabel(probs, target, self.num_labels)
        self.probs.append(probs.detach().float())
        self.target.append(target.detach().float())

    def compute(self) -> dict[str, Tensor]:
        return multilabel_metrics(
            dim_zero_cat(self.probs),
            dim_zero_cat(self.target),
            self.class_counts,
            self.thresholds,
            self.many_threshold,
            self.few_threshold,
            self.n_bins,
        )
