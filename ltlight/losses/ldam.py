"""LDAM: label-distribution-aware margins, larger for the rarer classes (Cao et al., 2019)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.losses.base import LongTailLoss, check_range, float_logits


class _Margins(LongTailLoss):
    """Shared by both LDAM losses: the per-class margins ``Δ_j`` from the class counts."""

    requires_class_counts = True

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None,
        max_m: float,
        weight: Tensor | Sequence[float] | None,
        reduction: str,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction)
        self.max_m = check_range("max_m", max_m, 0.0, low_open=True)
        self._register_derived("margins")
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Set ``n_j`` and derive ``Δ_j = C / n_j^{1/4}`` with ``max_j Δ_j = max_m``."""
        super().set_class_counts(class_counts)
        margins = self.class_counts.to(torch.float64).pow(-0.25)
        self._set_derived("margins", margins * (self.max_m / margins.max()))

    def _target_margins(self, logits: Tensor, target: Tensor) -> Tensor:
        """``Δ_{y_i}`` for each sample, in the logits' device and dtype."""
        self._counts_for(logits)
        return self.margins.to(device=logits.device, dtype=logits.dtype).index_select(0, target)

    def extra_repr(self) -> str:
        return f"max_m={self.max_m}, {super().extra_repr()}"


class LDAMLoss(_Margins):
    """Label-distribution-aware margin loss.

    ``Δ_j = C / n_j^{1/4}`` with ``C`` such that the rarest class gets ``Δ = max_m``, and

        ``ℓ_i = CE(s·(z_i − Δ_{y_i}·e_{y_i}), y_i)
             = −log( e^{s(z_y − Δ_y)} / (e^{s(z_y − Δ_y)} + Σ_{j≠y} e^{s·z_j}) )``.

    The margins come from the generalisation bound ``1/(γ_1√n_1) + 1/(γ_2√n_2)``: tail classes
    get larger margins. ``s`` is meant for a normalised (cosine) head, whose logits lie in
    [−1, 1]; the model is then trained on ``s·z``, which is what :meth:`predictive_logits`
    returns (ECE on raw cosines is meaningless).

    Paper: Cao, Wei, Gaidon, Arechiga, Ma, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss", NeurIPS 2019 (paper symbols: ``C`` from ``max_m``, ``s`` the scale).
    Official code (kaidic/LDAM-DRW) builds the margin with a one-hot matmul and
    ``torch.where``; here one ``scatter_add`` subtracts ``s·Δ_y`` at the target — the same
    value. The softmax runs in float32 under bf16/fp16 autocast (``s·z`` up to 30 overflows
    half-precision exponent arithmetic otherwise).

    Args:
        class_counts: training samples per class ``n_j``, or ``None`` to set later with
            :meth:`set_class_counts` (:class:`~ltlight.LongTailModule` does this).
        max_m: the largest margin (rarest class), > 0; paper 0.5.
        s: logit scale, > 0; paper 30.
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        max_m: float = 0.5,
        s: float = 30.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, max_m, weight, reduction)
        self.s = check_range("s", s, 0.0, low_open=True)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        z = float_logits(logits)
        margin = self._target_margins(z, target)
        scaled = self.s * z
        # Subtracting the constant s·Δ_y at the target leaves the gradient unchanged, so it
        # needs no autograd node: done in place, through a detached alias, on the fresh s·z
        # (whose backward saves nothing).
        scaled.detach().scatter_add_(1, target.unsqueeze(1), margin.mul_(-self.s).unsqueeze(1))
        return F.cross_entropy(scaled, target, reduction="none")

    def predictive_logits(self, logits: Tensor) -> Tensor:
        """``s·z``: the logits whose softmax the loss trains."""
        return self.s * logits

    def extra_repr(self) -> str:
        return f"s={self.s}, {super().extra_repr()}"


class LDAMHingeLoss(_Margins):
    """Hinge form of LDAM: ``ℓ_i = max(max_{j≠y} z_j − z_y + Δ_y, 0)``.

    Margins ``Δ_j = C / n_j^{1/4}`` as in :class:`LDAMLoss` (``max_j Δ_j = max_m``). No scale:
    the hinge does not define a probability, so :meth:`predictive_logits` is the identity.

    Paper: Cao et al., NeurIPS 2019, the "LDAM-HG" variant (eq. 11). The official code ships
    only the softmax form.

    Args:
        class_counts: training samples per class ``n_j``, or ``None`` to set later.
        max_m: the largest margin (rarest class), > 0; paper 0.5.
        weight: per-class weight ``w`` (length C) or ``None``; settable later (DRW).
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        max_m: float = 0.5,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, max_m, weight, reduction)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        # With w = z − Δ_y·e_y and k = argmax_j w_j, the loss is w_k − w_y:
        # max_{j≠y} z_j − z_y + Δ_y when that is positive, else 0 (then k = y). Only the argmax
        # needs all of w; the loss itself gathers two logits, so its backward is one scatter.
        z = float_logits(logits)
        margin = self._target_margins(z, target)
        with torch.no_grad():
            index = target.unsqueeze(1)
            top = z.scatter_add(1, index, -margin.unsqueeze(1)).max(dim=1).indices
        pair = z.gather(1, torch.stack((top, target), dim=1))
        return pair[:, 0] - pair[:, 1] + margin * (top != target)
