"""TaiLr / γ-cross-entropy: cross-entropy that stops pushing confident samples (Ji et al., 2023)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, float_logits


class TaiLrLoss(LongTailLoss):
    """γ-cross-entropy ``ℓ_i = −log(γ + (1 − γ)·p_y) / (1 − γ)``, ``p_y = softmax(z_i)_{y_i}``.

    ``γ = 0`` is cross-entropy; ``γ = 1`` is the limit ``1 − p_y``, so the value is continuous in
    ``γ`` (Su's blog writes ``−p_y``, equal up to a constant). Its gradient is
    ``w·∇(−log p_y)`` with ``w = p_y / (γ + (1 − γ)p_y)`` ≤ 1: confident-but-wrong samples
    (small ``p_y``) are down-weighted, which curbs over-confidence (lower ECE). ``gamma`` may be
    changed between steps (a schedule raising it from 0 towards 1).

    Computed in log space, ``log(γ + (1 − γ)p_y) = logaddexp(log γ, log(1 − γ) + log p_y)`` with
    ``log p_y`` from ``cross_entropy``, so ``p_y`` below float32's range still gives a finite,
    exact value, and ``γ`` close to 1 keeps its precision.

    Thresholded form (``threshold > 0``, the official TaiLr code): the loss value is
    ``−clamp(w, min=threshold)·log p_y`` with ``w`` held constant (no gradient through it), i.e.
    the official "weight × NLL"; its gradient is the γ-CE gradient wherever ``w ≥ threshold``.

    Paper: Ji, Ke, Hu, Zhang, Huang, "Tailoring Language Generation Models under Total Variation
    Distance", ICLR 2023; Su Jianlin, "缓解交叉熵过度自信的一个简明方案" (blog, 2023). Where the
    official code (thu-coai/TaiLr) differs: it takes ``softmax(z).log()`` and
    ``log(γ + (1 − γ)p)`` directly, which gives ``−inf``/NaN once ``p`` underflows; its
    ``density_ratio_threshold`` is our ``gamma`` and ``density_min_weight`` our ``threshold``.

    Args:
        gamma: ``γ`` in [0, 1]; 0 is cross-entropy.
        threshold: lower clamp of the weight ``w`` in [0, 1]; 0 gives the γ-CE value.
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        gamma: float = 0.0,
        threshold: float = 0.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.gamma = gamma
        self.threshold = check_range("threshold", threshold, 0.0, 1.0)

    @property
    def gamma(self) -> float:
        return self._gamma

    @gamma.setter
    def gamma(self, value: float) -> None:
        self._gamma = check_range("gamma", value, 0.0, 1.0)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        nll = F.cross_entropy(  # −log p_y
            float_logits(logits), target, reduction="none", ignore_index=self.ignore_index
        )
        gamma = self._gamma
        if self.threshold > 0:
            with torch.no_grad():
                ratio = torch.exp(-nll - self._log_mixture(nll)).clamp_min_(self.threshold)
            return ratio * nll
        if gamma == 0.0:
            return nll
        if gamma == 1.0:
            return -torch.expm1(-nll)
        return self._log_mixture(nll) / (gamma - 1.0)

    def _log_mixture(self, nll: Tensor) -> Tensor:
        """``log(γ + (1 − γ)·p_y)`` from ``nll = −log p_y``, stable for any ``p_y`` and ``γ``."""
        gamma = self._gamma
        if gamma == 0.0:
            return -nll
        if gamma == 1.0:
            return torch.zeros_like(nll)
        # a 0-dim fill on nll's device: no host-to-device copy
        log_gamma = nll.new_full((), math.log(gamma))
        return torch.logaddexp(math.log1p(-gamma) - nll, log_gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, threshold={self.threshold}, {super().extra_repr()}"
