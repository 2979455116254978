"""Long-tail classification metrics: per-class, balanced and many/medium/few-shot error, and
calibration (ECE, classwise ECE, NLL, Brier score), overall and per shot group.

One torchmetrics :class:`LongTailMetrics` keeps only sums — per class: correct and total; per
confidence bin: count, correct and confidence sum — so its memory is ``O(C + bins)`` whatever the
data size, and DDP sync is an exact ``all_reduce(sum)`` that torchmetrics does by itself. Beside it
:func:`long_tail_metrics` computes the same dictionary from one batch of probabilities.

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
from torchmetrics import Metric

from ltlight._lightning_internals import forget_computed
from ltlight.checks import check_class_counts

#: Names of the shot groups, in the order :func:`shot_groups` numbers them.
SHOT_GROUPS = ("many", "medium", "few")
#: The scalar entries of :meth:`LongTailMetrics.compute` (the ones a logger can plot as a line).
#: Calibration measures computed overall and per shot group.
CALIBRATION_KEYS = ("ece", "classwise_ece", "nll", "brier")
SCALAR_KEYS = (
    "error",
    "balanced_error",
    "many_shot_error",
    "medium_shot_error",
    "few_shot_error",
    *CALIBRATION_KEYS,
    *(f"{group}_shot_{key}" for key in CALIBRATION_KEYS for group in SHOT_GROUPS),
)


def check_thresholds(many_threshold: int, few_threshold: int) -> None:
    """Raise ``ValueError`` unless ``0 <= few_threshold <= many_threshold``."""
    if few_threshold < 0:
        raise ValueError(f"few_threshold must be >= 0, got {few_threshold}")
    if many_threshold < few_threshold:
        raise ValueError(
            f"many_threshold must be >= few_threshold, got many_threshold={many_threshold} "
            f"and few_threshold={few_threshold}"
        )


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


def _calibration_update(
    probs: Tensor, target: Tensor, num_classes: int, n_bins: int
) -> tuple[Tensor, ...]:
    """Sums per true class — NLL, Brier, and per confidence bucket: correct, confidence —
    and per (class, bucket of ``p_class``): probability sum, hits (``y = class``).

    Buckets as :func:`_long_tail_update` (``n_bins + 1``, the last holds ``p = 1``). Flattened
    ``(class, bucket)`` indices go through ``scatter_add_``: ``C·(n_bins + 1)`` counters,
    whatever the batch size.
    """
    probs = probs.detach().float()
    buckets = n_bins + 1
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=probs.device)
    confidence, prediction = probs.max(dim=1)
    correct = prediction.eq(target)
    p_true = probs.gather(1, target.unsqueeze(1)).squeeze(1)
    tiny = torch.finfo(torch.float32).tiny
    nll = -torch.log(p_true.clamp_min(tiny))
    brier = probs.square().sum(1) - 2 * p_true + 1

    def summed(index: Tensor, values: Tensor, size: int) -> Tensor:
        out = torch.zeros(size, dtype=values.dtype, device=probs.device)
        return out.scatter_add_(0, index.flatten(), values.flatten())

    class_nll = summed(target, nll, num_classes)
    class_brier = summed(target, brier, num_classes)
    bucket = (torch.bucketize(confidence, edges, right=True) - 1) + target * buckets
    size = num_classes * buckets
    class_bin_correct = summed(bucket, correct.long(), size)
    class_bin_confidence = summed(bucket, confidence, size)

    prob_bucket = torch.bucketize(probs, edges, right=True) - 1
    prob_bucket += torch.arange(num_classes, device=probs.device) * buckets
    hits = target.unsqueeze(1) == torch.arange(num_classes, device=probs.device)
    prob_bin_sum = summed(prob_bucket, probs, size)
    prob_bin_hits = summed(prob_bucket, hits.long(), size)
    return (
        class_nll,
        class_brier,
        class_bin_correct,
        class_bin_confidence,
        prob_bin_sum,
        prob_bin_hits,
    )


def _calibration_compute(
    class_total: Tensor,
    class_nll: Tensor,
    class_brier: Tensor,
    class_bin_correct: Tensor,
    class_bin_confidence: Tensor,
    prob_bin_sum: Tensor,
    prob_bin_hits: Tensor,
    groups: Tensor | None,
) -> dict[str, Tensor]:
    num_classes = class_total.numel()
    total = class_total.sum().float()
    per_class_calibration = (prob_bin_hits.float() - prob_bin_sum).view(num_classes, -1).abs().sum(
        1
    ) / total
    results = {
        "nll": class_nll.sum() / total,
        "brier": class_brier.sum() / total,
        "per_class_calibration_error": per_class_calibration,
        "classwise_ece": per_class_calibration.mean(),
    }
    nan = torch.tensor(float("nan"), device=class_total.device)
    gap = (class_bin_correct.float() - class_bin_confidence).view(num_classes, -1)
    for index, name in enumerate(SHOT_GROUPS):
        if groups is None:
            for key in CALIBRATION_KEYS:
                results[f"{name}_shot_{key}"] = nan
            continue
        member = (groups == index).to(total.dtype)  # a mask product: no host sync for sizes
        n = (class_total.float() * member).sum()
        results[f"{name}_shot_ece"] = (gap * member.unsqueeze(1)).sum(0).abs().sum() / n
        results[f"{name}_shot_nll"] = (class_nll * member).sum() / n
        results[f"{name}_shot_brier"] = (class_brier * member).sum() / n
        results[f"{name}_shot_classwise_ece"] = (per_class_calibration * member).sum() / (
            member.sum()
        )
    return results


def _long_tail_update(
    probs: Tensor, target: Tensor, num_classes: int, n_bins: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per-class ``(correct, total)`` and per-bucket ``(count, correct, confidence sum)``.

    Buckets are ``n_bins + 1`` long (the extra one holds ``c = 1``). Counting goes through a
    one-hot comparison rather than ``bincount``/``scatter_add``: deterministic on every device,
    and ``N × (C + bins)`` booleans is nothing next to the forward pass.
    """
    if probs.dim() != 2 or probs.shape[1] != num_classes:
        raise ValueError(
            f"probs must have shape (N, {num_classes}) (softmax probabilities), "
            f"got {tuple(probs.shape)}"
        )
    if target.shape != probs.shape[:1]:
        raise ValueError(
            f"target must have shape ({probs.shape[0]},) (class indices), got {tuple(target.shape)}"
        )
    probs = probs.detach().float()
    confidence, prediction = probs.max(dim=1)
    correct = prediction.eq(target)

    is_class = target.unsqueeze(1) == torch.arange(num_classes, device=target.device)
    class_total = is_class.sum(0)
    class_correct = (is_class & correct.unsqueeze(1)).sum(0)

    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32, device=probs.device)
    bucket = torch.bucketize(confidence, edges, right=True) - 1
    in_bucket = bucket.unsqueeze(1) == torch.arange(n_bins + 1, device=probs.device)
    bin_count = in_bucket.sum(0)
    bin_correct = (in_bucket & correct.unsqueeze(1)).sum(0)
    bin_confidence_sum = (in_bucket * confidence.unsqueeze(1)).sum(0)
    return class_correct, class_total, bin_count, bin_correct, bin_confidence_sum


def _merge_last_two(x: Tensor) -> Tensor:
    return torch.cat([x[:-2], x[-2:].sum(0, keepdim=True)])


def _long_tail_compute(
    class_correct: Tensor,
    class_total: Tensor,
    bin_count: Tensor,
    bin_correct: Tensor,
    bin_confidence_sum: Tensor,
    class_counts: Tensor | None,
    many_threshold: int,
    few_threshold: int,
) -> dict[str, Tensor]:
    nan = torch.tensor(float("nan"), device=class_correct.device)
    per_class_error = 1 - class_correct.float() / class_total.float()  # 0/0 → NaN
    total = class_total.sum().float()
    results = {
        "error": 1 - class_correct.sum().float() / total,
        "balanced_error": per_class_error.nanmean(),
        "per_class_error": per_class_error,
    }
    if class_counts is None:
        for name in SHOT_GROUPS:
            results[f"{name}_shot_error"] = nan
    else:
        groups = shot_groups(class_counts.to(per_class_error.device), many_threshold, few_threshold)
        for index, name in enumerate(SHOT_GROUPS):
            # torch.where, not boolean indexing: no host sync for the group's size.
            in_group = torch.where(groups == index, per_class_error, nan)
            results[f"{name}_shot_error"] = in_group.nanmean()
    results["ece"] = (bin_correct.float() - bin_confidence_sum).abs().sum() / total
    count = _merge_last_two(bin_count)
    results["bin_confidence"] = _merge_last_two(bin_confidence_sum) / count.float()
    results["bin_accuracy"] = _merge_last_two(bin_correct).float() / count.float()
    results["bin_count"] = count
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
    """Functional form of :class:`LongTailMetrics`: the same dictionary from one set of predictions.

    Args:
        probs: ``(N, C)`` predicted probabilities (a softmax of the loss's predictive logits).
        target: ``(N,)`` class indices.
        num_classes: ``C``.
        class_counts: training samples per class, for the shot groups; ``None`` gives NaN there.
        many_threshold: a class with more training samples than this is many-shot.
        few_threshold: a class with fewer training samples than this is few-shot.
        n_bins: equal-width confidence bins for ECE and the reliability diagram.
    """
    _check_arguments(num_classes, n_bins)
    check_thresholds(many_threshold, few_threshold)
    counts = None if class_counts is None else _check_counts(class_counts, num_classes)
    invalid_targets, invalid_probs, probs, target = _count_invalid(probs, target, num_classes)
    _refuse_invalid(int(invalid_targets), int(invalid_probs), target.numel(), num_classes)
    states = _long_tail_update(probs, target, num_classes, n_bins)
    results = _long_tail_compute(*states, counts, many_threshold, few_threshold)
    nll, brier, bin_correct, bin_conf, prob_sum, prob_hits = _calibration_update(
        probs, target, num_classes, n_bins
    )
    groups = None if counts is None else shot_groups(counts, many_threshold, few_threshold)
    results.update(
        _calibration_compute(
            states[1], nll, brier, bin_correct, bin_conf, prob_sum, prob_hits, groups
        )
    )
    return results


#: How far a row of probabilities may sum from 1: bfloat16 rounding moves each value by up to
#: 2⁻⁸ of itself, so a rounded row sums to 1 within 0.4 %; logits are far outside this.
PROBABILITY_TOLERANCE = 1e-2


def _count_invalid(
    probs: Tensor, target: Tensor, num_classes: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(#targets outside [0, C), #rows that are not probabilities, probs, target)``, the last
    two clamped into range.

    Device tensors, no host sync. The clamping only keeps the counting kernels in bounds (an
    out-of-range index is a device-side assert on CUDA) and changes nothing valid;
    :func:`_refuse_invalid` then refuses the whole result.
    """
    outside = (target < 0) | (target >= num_classes)
    if probs.dim() == 2:
        rows = probs.detach().float()
        not_probability = (
            ~torch.isfinite(rows).all(1)
            | (rows < 0).any(1)
            | (rows > 1).any(1)
            | ((rows.sum(1) - 1).abs() > PROBABILITY_TOLERANCE)
        )
        invalid_probs = not_probability.sum().reshape(1)
        probs = probs.nan_to_num(0.0, 1.0, 0.0).clamp(0, 1)
    else:
        invalid_probs = torch.zeros(1, dtype=torch.int64, device=probs.device)
    return outside.sum().reshape(1), invalid_probs, probs, target.clamp(0, num_classes - 1)


def _refuse_invalid(invalid_targets: int, invalid_probs: int, total: int, num_classes: int) -> None:
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


def _check_arguments(num_classes: int, n_bins: int) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")


def _check_counts(class_counts: Sequence[int] | Tensor, num_classes: int) -> Tensor:
    counts = check_class_counts(class_counts)
    if counts.numel() != num_classes:
        raise ValueError(
            f"class_counts has {counts.numel()} entries but num_classes is {num_classes}"
        )
    return counts


#: The metric states :func:`_calibration_update` fills, in its order.
_CALIBRATION_STATES = (
    "class_nll",
    "class_brier",
    "class_bin_correct",
    "class_bin_confidence",
    "prob_bin_sum",
    "prob_bin_hits",
)


class LongTailMetrics(Metric):
    """Overall, per-class, balanced and many/medium/few-shot error, ECE and reliability bins.

    ``update(probs, target)`` takes probabilities ``(N, C)`` — the module computes
    ``softmax(loss.predictive_logits(logits))``, so calibration is measured on the logits the loss
    trains — and class indices ``(N,)``. It only accumulates sums on the probabilities' device
    (no ``.item()``, no host sync); ``compute()`` returns the dictionary described in the module
    docstring (keys ``error``, ``balanced_error``, ``per_class_error``, ``many_shot_error``,
    ``medium_shot_error``, ``few_shot_error``, ``ece``, ``classwise_ece``, ``nll``, ``brier``,
    their per-shot-group forms, ``per_class_calibration_error``, ``bin_confidence``,
    ``bin_accuracy``, ``bin_count``; :data:`SCALAR_KEYS` lists the scalar ones).

    Args:
        num_classes: ``C``.
        class_counts: training samples per class, for the shot groups; may come later through
            :meth:`set_class_counts` (the module hands over the datamodule's). Without them the
            shot-group errors are NaN.
        many_threshold: a class with more training samples than this is many-shot (default 100).
        few_threshold: a class with fewer training samples than this is few-shot (default 20).
        n_bins: equal-width confidence bins for ECE and the reliability diagram (default 15).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    class_correct: Tensor
    class_total: Tensor
    bin_count: Tensor
    bin_correct: Tensor
    bin_confidence_sum: Tensor

    def __init__(
        self,
        num_classes: int,
        class_counts: Sequence[int] | None = None,
        many_threshold: int = 100,
        few_threshold: int = 20,
        n_bins: int = 15,
    ) -> None:
        super().__init__()
        _check_arguments(num_classes, n_bins)
        check_thresholds(many_threshold, few_threshold)
        self.num_classes = num_classes
        self.many_threshold = many_threshold
        self.few_threshold = few_threshold
        self.n_bins = n_bins
        self.class_counts: Tensor | None = None
        if class_counts is not None:
            self.set_class_counts(class_counts)
        for name, size, dtype in (
            ("class_correct", num_classes, torch.int64),
            ("class_total", num_classes, torch.int64),
            ("bin_count", n_bins + 1, torch.int64),
            ("bin_correct", n_bins + 1, torch.int64),
            ("bin_confidence_sum", n_bins + 1, torch.float32),
            ("class_nll", num_classes, torch.float32),
            ("class_brier", num_classes, torch.float32),
            ("class_bin_correct", num_classes * (n_bins + 1), torch.int64),
            ("class_bin_confidence", num_classes * (n_bins + 1), torch.float32),
            ("prob_bin_sum", num_classes * (n_bins + 1), torch.float32),
            ("prob_bin_hits", num_classes * (n_bins + 1), torch.int64),
            ("invalid_targets", 1, torch.int64),
            ("invalid_probs", 1, torch.int64),
        ):
            self.add_state(name, torch.zeros(size, dtype=dtype), dist_reduce_fx="sum")

    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Set the training class counts that define the many/medium/few-shot groups."""
        self.class_counts = _check_counts(class_counts, self.num_classes)
        forget_computed(self)  # torchmetrics' cached compute() result used the old counts

    def update(self, probs: Tensor, target: Tensor) -> None:
        """Accumulate a batch: ``probs`` ``(N, C)`` probabilities, ``target`` ``(N,)`` indices.

        Targets outside ``[0, C)`` and rows that are not probabilities are counted here, on the
        device, and refused by :meth:`compute` — checking here would cost a host sync per step.
        """
        invalid_targets, invalid_probs, probs, target = _count_invalid(
            probs, target, self.num_classes
        )
        self.invalid_targets += invalid_targets
        self.invalid_probs += invalid_probs
        class_correct, class_total, bin_count, bin_correct, bin_confidence_sum = _long_tail_update(
            probs, target, self.num_classes, self.n_bins
        )
        self.class_correct += class_correct
        self.class_total += class_total
        self.bin_count += bin_count
        self.bin_correct += bin_correct
        self.bin_confidence_sum += bin_confidence_sum
        for name, value in zip(
            _CALIBRATION_STATES,
            _calibration_update(probs, target, self.num_classes, self.n_bins),
            strict=True,
        ):
            getattr(self, name).add_(value)

    def compute(self) -> dict[str, Tensor]:
        """The metric dictionary from everything accumulated since the last ``reset()``.

        Raises:
            ValueError: if any target was outside ``[0, C)`` or any row of ``probs`` was not a
                probability distribution (logits passed by mistake).
        """
        _refuse_invalid(
            int(self.invalid_targets.sum()),
            int(self.invalid_probs.sum()),
            int(self.class_total.sum()),
            self.num_classes,
        )
        results = _long_tail_compute(
            self.class_correct,
            self.class_total,
            self.bin_count,
            self.bin_correct,
            self.bin_confidence_sum,
            self.class_counts,
            self.many_threshold,
            self.few_threshold,
        )
        groups = None
        if self.class_counts is not None:
            counts = self.class_counts.to(self.class_total.device)
            groups = shot_groups(counts, self.many_threshold, self.few_threshold)
        results.update(
            _calibration_compute(
                self.class_total,
                self.class_nll,
                self.class_brier,
                self.class_bin_correct,
                self.class_bin_confidence,
                self.prob_bin_sum,
                self.prob_bin_hits,
                groups,
            )
        )
        return results
