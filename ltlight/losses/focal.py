"""Focal losses: down-weight the well-classified samples by ``(1 − p_t)^γ`` (Lin et al., 2017)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, dense_target, float_logits, index_target


def _modulating_factor(one_minus_p: Tensor, gamma: float) -> Tensor:
    """``(1 − p_t)^γ``, with a finite gradient where ``p_t`` rounds to 1.

    For ``0 < γ < 1`` the derivative ``γ(1 − p_t)^{γ−1}`` is infinite at ``p_t = 1`` and autograd
    would return ``inf · 0 = NaN``; its true limit (times ``−log p_t → 0``) is 0, which clamping
    at the smallest normal float gives. The value changes by less than that float.
    """
    if 0.0 < gamma < 1.0:
        one_minus_p = one_minus_p.clamp_min(torch.finfo(one_minus_p.dtype).tiny)
    return one_minus_p.pow(gamma)


class FocalLoss(LongTailLoss):
    """Softmax (multi-class) focal loss ``ℓ_i = −α_{y_i} (1 − p_t)^γ log p_t``.

    ``p_t = softmax(z_i)_{y_i}`` is the *unweighted* model probability of the target class;
    ``α_t = alpha[y_i]`` is part of ``ℓ_i``, so with a per-class ``weight`` the ``"mean"``
    reduction is still ``Σ w_y ℓ_i / Σ w_y``. ``γ = 0`` and ``alpha = None`` is cross-entropy.
    ``1 − p_t`` is computed as ``−expm1(log p_t)``, accurate when ``p_t`` is close to 1.

    Paper: Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection", ICCV 2017
    (there in sigmoid form; see :class:`SigmoidFocalLoss`). Where the official LDAM-DRW code
    differs: it takes ``p_t = exp(−weighted CE)``, which is not a probability once class weights
    are on (DRW), and averages with a plain mean; here ``p_t`` is the model's probability and the
    weight enters only through the shared weighted reduction.

    Args:
        gamma: focusing parameter ``γ`` ≥ 0; paper 2.
        alpha: per-class balance factor (length C, each ≥ 0), or ``None`` for none.
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | None = None,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.gamma = check_range("gamma", gamma, 0.0)
        if alpha is not None:
            try:
                alpha = torch.as_tensor(alpha, dtype=torch.float32)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ValueError(
                    f"alpha must be None or a 1-D sequence of per-class factors >= 0, got {alpha!r}"
                ) from error
            if alpha.dim() != 1 or alpha.numel() == 0:
                raise ValueError(
                    f"alpha must be None or a 1-D sequence of per-class factors >= 0, "
                    f"got shape {tuple(alpha.shape)}"
                )
            if not bool(torch.all(torch.isfinite(alpha) & (alpha >= 0))):
                raise ValueError(f"alpha must be finite and >= 0 per class, got {alpha.tolist()}")
        # A constructor argument, not state: non-persistent, so checkpoints do not depend on it.
        self.register_buffer("alpha", alpha, persistent=False)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        z = float_logits(logits)
        loss = F.cross_entropy(z, target, reduction="none", ignore_index=self.ignore_index)
        if self.gamma != 0.0:
            loss = _modulating_factor(-torch.expm1(-loss), self.gamma) * loss
        if self.alpha is not None:
            if self.alpha.numel() != z.shape[-1]:
                raise ValueError(
                    f"FocalLoss has alpha for {self.alpha.numel()} classes but the logits have "
                    f"{z.shape[-1]} classes"
                )
            alpha_t = self.alpha.to(z.dtype).index_select(0, index_target(target, z.shape[-1]))
            loss = alpha_t * loss
        return loss

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"


class SigmoidFocalLoss(LongTailLoss):
    """Sigmoid (multi-label) focal loss, per element: ``ℓ_ic = −α_t (1 − p_t)^γ log p_t``.

    ``p = σ(x_ic)``, ``p_t = p·y + (1 − p)(1 − y)``, ``α_t = α·y + (1 − α)(1 − y)``, and
    ``−log p_t`` is BCE-with-logits. Targets are class indices (one-hot encoded) or floats
    shaped like the logits. Equals ``torchvision.ops.sigmoid_focal_loss`` for every reduction
    (``"mean"`` is the plain mean over all elements); a per-class ``weight`` multiplies ``ℓ_ic``.

    Paper: Lin, Goyal, Girshick, He, Dollár, "Focal Loss for Dense Object Detection", ICCV 2017.
    Differences from torchvision: ``alpha=None`` (not a negative number) switches ``α_t`` off, and
    for ``0 < γ < 1`` the gradient stays finite where ``p_t`` rounds to 1 (torchvision: NaN).

    Args:
        alpha: balance factor for the positives, in [0, 1], or ``None`` for none; paper 0.25.
        gamma: focusing parameter ``γ`` ≥ 0; paper 2.
        weight: per-class weight on the last axis (length C) or ``None``.
        reduction: ``"mean"`` (mean over elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
        ignore_index: with class-index targets, a value whose samples (rows) contribute nothing.
    """

    multi_label = True

    def __init__(
        self,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        self.alpha = None if alpha is None else check_range("alpha", alpha, 0.0, 1.0)
        self.gamma = check_range("gamma", gamma, 0.0)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        x = float_logits(logits)
        y = dense_target(x, target)
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # −log p_t
        if self.gamma != 0.0:
            # 1 − p_t = p(1 − y) + (1 − p)y = p·(1 − 2y) + y: one fused op on the autograd path
            one_minus_p_t = torch.addcmul(y, torch.sigmoid(x), 1 - 2 * y)
            loss = loss * _modulating_factor(one_minus_p_t, self.gamma)
        if self.alpha is not None:
            loss = loss * (y * (2 * self.alpha - 1) + (1 - self.alpha))  # α_t
        return loss

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}, {super().extra_repr()}"
