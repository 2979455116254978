"""Multi-label decision thresholds, one per label, fitted on the validation split — and, on
request, one temperature per label first (temperature scaling, Guo et al., ICML 2017, per label).

A label ``c`` is predicted when ``p_c ≥ t_c``. Each ``t_c`` cuts the sorted validation
probabilities of label ``c`` between two distinct values, midway (a probability that moves by
rounding does not change sides), at the cut that maximises the label's F1, or at the one with the
most recall among those whose precision reaches a target (none does: the most precise one), or at
the highest one whose recall reaches a target. Ties go to the highest threshold. A label with no
positive in the validation split keeps 0.5.
"""

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.callbacks.posthoc.base import PostHocCallback, collect_outputs
from ltlight.checks import check_range
from ltlight.metrics.multilabel import MULTILABEL_SCALAR_KEYS, multilabel_metrics


def _cut(p: Tensor, y: Tensor, target_precision: float | None, target_recall: float | None):
    """The threshold of one label from its known probabilities ``p`` and 0/1 targets ``y``."""
    order = torch.argsort(p, descending=True, stable=True)
    p, y = p[order], y[order]
    true_positives = torch.cumsum(y, 0)
    predicted = torch.arange(1, len(p) + 1, dtype=p.dtype)  # predicting the top k, k = 1 … n
    # a cut is a threshold p[k]: it predicts every probability ≥ p[k], the whole tie
    valid = torch.cat([p[1:] < p[:-1], torch.ones(1, dtype=torch.bool)])
    precision = true_positives / predicted
    recall = true_positives / y.sum()
    if target_precision is not None:
        reached = valid & (precision >= target_precision)
        # the most recall among the cuts that reach it; unreachable: the most precise cut
        score = torch.where(reached, recall, -1.0) if bool(reached.any()) else precision
        k = int(torch.argmax(torch.where(valid, score, -1.0)))
    elif target_recall is not None:
        k = int(torch.nonzero(valid & (recall >= target_recall)).min())  # k = n − 1 reaches it
    else:
        f1 = 2 * true_positives / (predicted + y.sum())
        k = int(torch.argmax(torch.where(valid, f1, -1.0)))  # first maximum: highest threshold
    # midway to the next lower probability: the same decisions on these images, and ones that do
    # not flip when a probability moves by rounding (another batch size, another device)
    return (p[k] + (p[k + 1] if k + 1 < len(p) else 0.0)) / 2


def tune_thresholds(
    probs: Tensor,
    target: Tensor,
    target_precision: float | None = None,
    target_recall: float | None = None,
) -> Tensor:
    """One threshold per label (see the module docstring), float64 ``(C,)`` in ``(0, 1)``.

    Args:
        probs: ``(N, C)`` label probabilities.
        target: ``(N, C)`` float targets, 1 / 0 / NaN (unknown, left out).
        target_precision: reach this precision per label (``None``: maximise F1).
        target_recall: reach this recall per label (``None``: maximise F1).
    """
    probs, target = probs.double(), target.double()
    thresholds = torch.full((probs.shape[1],), 0.5, dtype=torch.float64)
    for label in range(probs.shape[1]):  # post-hoc, once: a loop over the labels is fine
        known = ~target[:, label].isnan()
        p, y = probs[known, label], target[known, label]
        if bool(y.sum() > 0):
            thresholds[label] = _cut(p, y, target_precision, target_recall)
    # a probability that rounded to exactly 0 or 1: the nearest threshold inside (0, 1) that
    # float32 (the module's buffer) still holds
    below_one = float(torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)))  # 1 − 2⁻²⁴
    return thresholds.clamp(torch.finfo(torch.float32).tiny, below_one)


def fit_label_temperature(logits: Tensor, target: Tensor, max_iter: int = 100) -> Tensor:
    """One ``T_c > 0`` per label minimising the validation BCE of ``σ(z_c / T_c)`` over the
    known entries (LBFGS on ``log T``, float64, from ``T = 1``; the labels' terms are separate,
    so this is each label's own fit)."""
    with torch.inference_mode(False), torch.enable_grad():
        z, y = logits.detach().double().clone(), target.detach().double().clone()
        known = ~y.isnan()
        y = y.nan_to_num(0.0)
        log_t = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            bce = F.binary_cross_entropy_with_logits(z / log_t.exp(), y, reduction="none")
            loss = torch.where(known, bce, 0.0).sum() / known.sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return log_t.detach().exp()


class ThresholdTuning(PostHocCallback):
    """Fit ``module.label_decision``'s per-label thresholds (and temperatures) on validation.

    Multi-label data only. The thresholds decide the labels :class:`PredictionWriter` writes
    and the F1 scores the module logs. Runs at the end of ``fit`` and at the start of
    ``validate``/``test``/``predict`` of a model without thresholds (see
    :mod:`ltlight.callbacks.posthoc.base`).

    Args:
        target_precision: per label, the threshold with the most validation recall among those
            whose precision reaches this, in (0, 1] (a label that never reaches it: its most
            precise cut); ``None``.
        target_recall: per label, the highest threshold whose validation recall reaches this,
            in (0, 1]; ``None``. With neither, each threshold maximises the label's F1.
        fit_temperature: first fit one temperature per label (minimum validation BCE); the
            thresholds are then on the calibrated probabilities.
        save_path: where ``validate``/``test``/``predict`` write the tuned checkpoint.

    Raises:
        ValueError: both targets given or one outside (0, 1]; single-label data; the datamodule
            validates on the test split.

    Example:
        >>> from ltlight.callbacks import ThresholdTuning
        >>> callback = ThresholdTuning(fit_temperature=True)  # maximum F1 per label
    """

    name = "posthoc/threshold_tuning"
    multi_label = True

    def __init__(
        self,
        target_precision: float | None = None,
        target_recall: float | None = None,
        fit_temperature: bool = False,
        save_path: str | None = None,
    ) -> None:
        super().__init__(save_path)
        if target_precision is not None and target_recall is not None:
            raise ValueError(
                "give target_precision or target_recall, not both, got "
                f"target_precision={target_precision} and target_recall={target_recall}"
            )
        for name, value in (
            ("target_precision", target_precision),
            ("target_recall", target_recall),
        ):
            if value is not None:
                check_range(name, value, 0.0, 1.0, low_open=True)
        self.target_precision = target_precision
        self.target_recall = target_recall
        self.fit_temperature = bool(fit_temperature)

    def is_fitted(self, pl_module: L.LightningModule) -> bool:
        return pl_module.label_decision.thresholds.numel() > 0

    def _outputs(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any):
        logits, target, _ = collect_outputs(trainer, pl_module, loader)
        if target.dim() != 2 or not target.is_floating_point():
            raise ValueError(
                "ThresholdTuning fits multi-label decision thresholds, but the validation "
                f"targets have shape {tuple(target.shape)} ({target.dtype}): it needs float "
                "(N, C) targets (1 positive, 0 negative, NaN unknown)"
            )
        pl_module._notice_multi_label(target)
        return logits.to(pl_module.device), target

    def _validation_metrics(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any
    ) -> dict[str, float]:
        logits, target = self._outputs(trainer, pl_module, loader)
        probs = pl_module.predict_proba(logits).cpu()
        decision = pl_module.label_decision
        results = multilabel_metrics(
            probs,
            target,
            pl_module.class_counts,
            decision.thresholds_for(probs.shape[1]),
            pl_module.many_shot_threshold,
            pl_module.few_shot_threshold,
            pl_module.ece_bins,
        )
        return {key: float(results[key]) for key in MULTILABEL_SCALAR_KEYS}

    def fit(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any) -> str:
        logits, target = self._outputs(trainer, pl_module, loader)
        summary = ""
        if self.fit_temperature:
            label_logits = getattr(pl_module.loss, "label_logits", None)
            z = logits if label_logits is None else label_logits(logits)
            temperature = fit_label_temperature(z.cpu(), target)
            pl_module.label_decision.set_temperature(temperature)
            summary = (
                f"T per label in [{float(temperature.min()):.3f}, {float(temperature.max()):.3f}]; "
            )
        probs = pl_module.predict_proba(logits).cpu()
        thresholds = tune_thresholds(probs, target, self.target_precision, self.target_recall)
        pl_module.label_decision.set_thresholds(thresholds)
        return (
            summary
            + f"thresholds in [{float(thresholds.min()):.3f}, {float(thresholds.max()):.3f}]"
        )

    def describe(self, summary: str) -> str:
        before, after = self.metrics_before, self.metrics_after
        return (
            f"{type(self).__name__}: {summary}; validation macro F1 {before['macro_f1']:.2%} → "
            f"{after['macro_f1']:.2%}, micro F1 {before['micro_f1']:.2%} → "
            f"{after['micro_f1']:.2%}, label-wise ECE {before['ece']:.2%} → {after['ece']:.2%}"
        )
