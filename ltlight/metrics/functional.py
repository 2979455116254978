"""Long-tail classification metrics, as functions: the states one batch adds, and the metric
dictionary they give — torchmetrics' split into ``_update`` and ``_compute``
(``torchmetrics/functional/classification/calibration_error.py``).

Every state is a sum, so batches, processes and shards merge by addition (DDP sync is an exact
``all_reduce(sum)``), and memory is ``O(C · bins)`` whatever the data size. A sample is counted
once, in the *cell* ``(true class, confidence bucket)``: per-class counts, per-bucket counts and
the per-shot-group calibration are all sums of those cells. Sums go through ``index_add_``
(``scatter``): counts are exact integers on every device; float sums (confidences, NLL, Brier)
may be added in another order on a GPU, which moves them by float32 rounding only.

Definitions (``p`` the predicted probabilities, ``ŷ = argmax p``, ``c = max p``):

* ``error``: ``1 − #(ŷ = y) / N`` over all samples.
* ``per_class_error[j]``: ``1 − #(ŷ = y = j) / #(y = j)``; NaN for a class without samples.
* ``balanced_error``: the mean of ``per_class_error`` over classes with samples
  (``1 −`` mean per-class recall, i.e. the error on a class-balanced test set).
* ``many_shot_error`` / ``medium_shot_error`` / ``few_shot_error``: the mean of
  ``per_class_error`` over the classes with ``n_j > many_threshold``,
  ``few_threshold ≤ n_j ≤ many_threshold`` and ``n_j < few_threshold`` training samples
  (``n_j`` the *training* class counts; defaults 100 and 20 as in Liu et al., "Large-Scale
  Long-Tailed Recognition in an Open World", CVPR 2019, and Kang et al., "Decoupling
  Representation and Classifier", ICLR 2020). NaN for an empty group or unknown counts.
* ``ece``: expected calibration error (Guo et al., "On Calibration of Modern Neural Networks",
  ICML 2017), l1 with ``n_bins`` equal-width bins:
  ``Σ_b (|B_b| / N) · |acc(B_b) − conf(B_b)|``. Binning is exactly torchmetrics'
  ``MulticlassCalibrationError`` (bin ``b`` holds ``c ∈ [b/n, (b+1)/n)``, and ``c = 1`` — a
  saturated float32 softmax — is a bucket of its own), so the two always agree.
* ``bin_confidence`` / ``bin_accuracy`` / ``bin_count``: the reliability diagram's ``n_bins``
  bins, the last one closed (``c = 1`` merged into it); NaN mean for an empty bin.
* ``nll``: the mean negative log-likelihood ``−log p_y`` (``p_y`` floored at float32's
  smallest normal number, so a saturated wrong prediction costs 87.3, not infinity).
* ``brier``: the mean Brier score ``Σ_j (p_j − 1[y = j])²`` (Brier, 1950; in [0, 2]).
* ``per_class_calibration_error[j]``: the calibration error of the probability of class ``j``
  over all samples, ``Σ_b (|B_jb| / N) · |freq_b(y = j) − mean_b(p_j)|`` with ``B_jb`` the
  samples whose ``p_j`` falls into bin ``b`` (same bins as ``ece``);
  ``classwise_ece``: its mean over classes (Kull et al., "Beyond temperature scaling",
  NeurIPS 2019; Nixon et al.'s "static calibration error").
* ``<group>_shot_ece`` / ``_nll`` / ``_brier``: ECE, NLL and Brier score of the test samples
  whose true class is in the group; ``<group>_shot_classwise_ece``: the mean of
  ``per_class_calibration_error`` over the group's classes.
"""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_class_counts, check_integer

#: Names of the shot groups, in the order :func:`shot_groups` numbers them.
SHOT_GROUPS = ("many", "medium", "few")
#: Calibration measures computed overall and per shot group.
CALIBRATION_KEYS = ("ece", "classwise_ece", "nll", "brier")
#: The scalar entries of the metric dictionary (the ones a logger can plot as a line).
SCALAR_KEYS = (
    "error",
    "balanced_error",
    "many_shot_error",
    "medium_shot_error",
    "few_shot_error",
    *CALIBRATION_KEYS,
    *(f"{group}_shot_{key}" for key in CALIBRATION_KEYS for group in SHOT_GROUPS),
)
#: How far a row of probabilities may sum from 1: bfloat16 rounding moves each value by up to
#: 2⁻⁸ of itself, so a rounded row sums to 1 within 0.4 %; logits are far outside this.
PROBABILITY_TOLERANCE = 1e-2


def state_shapes(num_classes: int, n_bins: int) -> dict[str, tuple[int, torch.dtype]]:
    """The sums :func:`long_tail_update` returns: name → (length, dtype).

    ``cell_*`` are indexed by ``class · (n_bins + 1) + bucket`` of the sample's true class and
    confidence bucket; ``prob_bin_*`` by ``class · (n_bins + 1) + bucket`` of ``p_class``.
    Buckets are ``n_bins + 1`` long: the last holds ``c = 1`` exactly.
    """
    cells = num_classes * (n_bins + 1)
    return {
        "cell_count": (cells, torch.int64),
        "cell_correct": (cells, torch.int64),
        "cell_confidence": (cells, torch.float32),
        "class_nll": (num_classes, torch.float32),
        "class_brier": (num_classes, torch.float32),
        "prob_bin_sum": (cells, torch.float32),
        "prob_bin_hits": (cells, torch.int64),
        "invalid_targets": (1, torch.int64),
        "invalid_probs": (1, torch.int64),
    }


def check_thresholds(many_threshold: int, few_threshold: int) -> None:
    """Raise ``ValueError`` unless ``0 <= few_threshold <= many_threshold``."""
    check_integer("few_threshold", few_threshold, 0)
    if many_threshold < few_threshold:
        raise ValueError(
            f"many_threshold must be >= few_threshold, got many_threshold={many_threshold} "
            f"and few_threshold={few_threshold}"
        )


def check_metric_arguments(
    num_classes: int,
    n_bins: int,
    many_threshold: int,
    few_threshold: int,
    class_counts: Sequence[int] | Tensor | None = None,
) -> Tensor | None:
    """Check the arguments of the metrics; return the class counts as a tensor (or ``None``)."""
    check_integer("num_classes", num_classes, 1)
    check_integer("n_bins", n_bins, 1)
    check_thresholds(many_threshold, few_threshold)
    if class_counts is None:
        return None
    counts = check_class_counts(class_counts)
    if counts.numel() != num_classes:
        raise ValueError(
            f"class_counts has {counts.numel()} entries but num_classes is {num_classes}"
        )
    return counts


def shot_groups(
    class_counts: Sequence[int] | Tensor, many_threshold: int = 100, few_threshold: int = 20
) -> Tensor:
    """Group index per class: 0 many-shot (``n > many_threshold``), 2 few-shot
    (``n < few_threshold``), 1 medium-shot otherwise; names in :data:`SHOT_GROUPS`."""
    check_thresholds(many_threshold, few_threshold)
    counts = torch.as_tensor(class_counts)
    groups = torch.ones(counts.shape, dtype=torch.int64, device=counts.device)
    groups[counts > many_threshold] = 0
    groups[counts < few_threshold] = 2
    return groups


def _checked(probs: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(probs, target, invalid)``: the shapes checked (a ``ValueError`` now), then the
    targets outside ``[0, C)`` and the rows that are not probabilities counted on the device —
    refused by :func:`refuse_invalid` at compute time, as checking here would cost a host sync
    per step. Both are clamped into range, which changes nothing valid and keeps the counting
    kernels in bounds (an out-of-range index is a device-side assert on CUDA)."""
    if probs.dim() != 2 or probs.shape[1] != num_classes:
        raise ValueError(
            f"probs must have shape (N, {num_classes}) (softmax probabilities), "
            f"got {tuple(probs.shape)}"
        )
    if target.shape != probs.shape[:1]:
        raise ValueError(
            f"target must have shape ({probs.shape[0]},) (class indices), got {tuple(target.shape)}"
        )
    rows = probs.detach().float()
    not_probability = (
        ~torch.isfinite(rows).all(1)
        | (rows < 0).any(1)
        | (rows > 1).any(1)
        | ((rows.sum(1) - 1).abs() > PROBABILITY_TOLERANCE)
    )
    outside = (target < 0) | (target >= num_classes)
    invalid = torch.stack([outside.sum(), not_probability.sum()])
    clean = rows.nan_to_num(0.0, 1.0, 0.0).clamp(0, 1)
    return clean, target.clamp(0, num_classes - 1), invalid


def long_tail_update(
    probs: Tensor, target: Tensor, num_classes: int, n_bins: int
) -> dict[str, Tensor]:
    """The sums one batch adds (names and shapes: :func:`state_shapes`).

    Args:
        probs: ``(N, C)`` predicted probabilities (a softmax of the loss's predictive logits).
        target: ``(N,)`` class indices.
        num_classes: ``C``.
        n_bins: equal-width confidence bins.
    """
    probs, target, invalid = _checked(probs, target, num_classes)
    device, buckets = probs.device, n_bins + 1
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=device)
    confidence, prediction = probs.max(dim=1)
    correct = prediction.eq(target)
    p_true = probs.gather(1, target.unsqueeze(1)).squeeze(1)
    nll = -torch.log(p_true.clamp_min(torch.finfo(torch.float32).tiny))
    brier = probs.square().sum(1) - 2 * p_true + 1
    cell = target * buckets + torch.bucketize(confidence, edges, right=True) - 1
    prob_cell = torch.bucketize(probs, edges, right=True) - 1
    prob_cell += torch.arange(num_classes, device=device) * buckets
    hits = target.unsqueeze(1) == torch.arange(num_classes, device=device)
    shapes = state_shapes(num_classes, n_bins)

    def summed(name: str, index: Tensor, values: Tensor) -> Tensor:
        size, dtype = shapes[name]
        out = torch.zeros(size, dtype=dtype, device=device)
        return out.index_add_(0, index.flatten(), values.flatten().to(dtype))

    return {
        "cell_count": summed("cell_count", cell, torch.ones_like(cell)),
        "cell_correct": summed("cell_correct", cell, correct),
        "cell_confidence": summed("cell_confidence", cell, confidence),
        "class_nll": summed("class_nll", target, nll),
        "class_brier": summed("class_brier", target, brier),
        "prob_bin_sum": summed("prob_bin_sum", prob_cell, probs),
        "prob_bin_hits": summed("prob_bin_hits", prob_cell, hits),
        "invalid_targets": invalid[:1],
        "invalid_probs": invalid[1:],
    }


def refuse_invalid(states: dict[str, Tensor], num_classes: int) -> None:
    """Raise ``ValueError`` if any target was outside ``[0, C)`` or any row of ``probs`` was
    not a probability distribution (logits passed by mistake)."""
    invalid_targets, invalid_probs = (
        int(states["invalid_targets"].sum()),
        int(states["invalid_probs"].sum()),
    )
    total = int(states["cell_count"].sum())
    if invalid_targets:
        raise ValueError(
            f"target must hold class indices in [0, {num_classes}), but {invalid_targets} of "
            f"{total} targets are outside it"
        )
    if invalid_probs:
        raise ValueError(
            f"probs must be probabilities (each row in [0, 1], summing to 1), but {invalid_probs} "
            f"of {total} rows are not: pass softmax(logits) (module.predict_proba), not logits"
        )


def _merge_last_two(x: Tensor) -> Tensor:
    return torch.cat([x[:-2], x[-2:].sum(0, keepdim=True)])


def long_tail_compute(
    states: dict[str, Tensor],
    class_counts: Tensor | None,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> dict[str, Tensor]:
    """The metric dictionary (see the module docstring) from accumulated sums."""
    num_classes = states["class_nll"].numel()
    count = states["cell_count"].view(num_classes, -1)
    correct = states["cell_correct"].view(num_classes, -1)
    confidence = states["cell_confidence"].view(num_classes, -1)
    class_total, class_correct = count.sum(1), correct.sum(1)
    total = class_total.sum().float()
    per_class_error = 1 - class_correct.float() / class_total.float()  # 0/0 → NaN
    gap = correct.float() - confidence  # per (class, bucket): accuracy minus confidence sums
    hits = states["prob_bin_hits"].view(num_classes, -1).float()
    per_class_calibration = (hits - states["prob_bin_sum"].view(num_classes, -1)).abs().sum(1)
    per_class_calibration = per_class_calibration / total
    bin_count, bin_correct, bin_confidence = count.sum(0), correct.sum(0), confidence.sum(0)
    results = {
        "error": 1 - class_correct.sum().float() / total,
        "balanced_error": per_class_error.nanmean(),
        "per_class_error": per_class_error,
        "ece": gap.sum(0).abs().sum() / total,
        "classwise_ece": per_class_calibration.mean(),
        "nll": states["class_nll"].sum() / total,
        "brier": states["class_brier"].sum() / total,
        "per_class_calibration_error": per_class_calibration,
        "bin_confidence": _merge_last_two(bin_confidence) / _merge_last_two(bin_count).float(),
        "bin_accuracy": _merge_last_two(bin_correct).float() / _merge_last_two(bin_count).float(),
        "bin_count": _merge_last_two(bin_count),
    }
    nan = torch.tensor(float("nan"), device=total.device)
    groups = None
    if class_counts is not None:
        groups = shot_groups(class_counts.to(total.device), many_threshold, few_threshold)
    for index, name in enumerate(SHOT_GROUPS):
        keys = ["error", *CALIBRATION_KEYS]
        if groups is None:
            results.update({f"{name}_shot_{key}": nan for key in keys})
            continue
        # masks, not boolean indexing: no host sync for the group's size
        member = (groups == index).to(total.dtype)
        n = (class_total.float() * member).sum()
        results[f"{name}_shot_error"] = torch.where(groups == index, per_class_error, nan).nanmean()
        results[f"{name}_shot_ece"] = (gap * member.unsqueeze(1)).sum(0).abs().sum() / n
        results[f"{name}_shot_nll"] = (states["class_nll"] * member).sum() / n
        results[f"{name}_shot_brier"] = (states["class_brier"] * member).sum() / n
        results[f"{name}_shot_classwise_ece"] = (per_class_calibration * member).sum() / (
            member.sum()
        )
    return results


def long_tail_metrics(
    probs: Tensor,
    target: Tensor,
    num_classes: int,
    class_counts: Sequence[int] | Tensor | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
    n_bins: int = 15,
) -> dict[str, Tensor]:
    """Functional form of :class:`~ltlight.metrics.LongTailMetrics`: the same dictionary from one
    set of predictions.

    Args:
        probs: ``(N, C)`` predicted probabilities (a softmax of the loss's predictive logits).
        target: ``(N,)`` class indices.
        num_classes: ``C``.
        class_counts: training samples per class, for the shot groups; ``None`` gives NaN there.
        many_threshold: a class with more training samples than this is many-shot.
        few_threshold: a class with fewer training samples than this is few-shot.
        n_bins: equal-width confidence bins for ECE and the reliability diagram.
    """
    counts = check_metric_arguments(
        num_classes, n_bins, many_threshold, few_threshold, class_counts
    )
    states = long_tail_update(probs, target, num_classes, n_bins)
    refuse_invalid(states, num_classes)
    return long_tail_compute(states, counts, many_threshold, few_threshold)


def balanced_error(predictions: Tensor, target: Tensor, num_classes: int) -> float:
    """``1 −`` the mean per-class recall of ``predictions`` (class indices), over the classes
    with samples: :func:`long_tail_metrics`' ``balanced_error`` for hard predictions, cheap enough
    to evaluate over a grid of post-hoc parameters."""
    correct = predictions.eq(target).double()
    total = torch.bincount(target, minlength=num_classes).double()
    hits = torch.bincount(target, weights=correct, minlength=num_classes)
    present = total > 0
    return float(1 - (hits[present] / total[present]).mean())
