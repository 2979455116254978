"""LDAM: label-distribution-aware margins, larger for the rarer classes (Cao et al., 2019)."""

from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, float_logits, index_target


class _Margins(LongTailLoss):
    """Shared by both LDAM losses: the per-class margins ``Δ_j`` from the class counts."""

    requires_class_counts = True
    count_constants = ("margins",)

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None,
        max_m: float,
        weight: Tensor | Sequence[float] | None,
        reduction: str,
        ignore_index: int,
    ) -> None:
        super().__init__(weight, reduction, class_counts, ignore_index)
        self.max_m = check_range("max_m", max_m, 0.0, low_open=True)

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        """``Δ_j = C / n_j^{1/4}`` with ``max_j Δ_j = max_m``."""
        margins = counts.pow(-0.25)
        return {"margins": margins * (self.max_m / margins.max())}

    def _target_margins(self, logits: Tensor, index: Tensor) -> Tensor:
        """``Δ_{y_i}`` per sample (``index`` from :func:`index_target`), in the logits' dtype."""
        self._counts_for(logits)
        return self.margins.to(logits.dtype).index_select(0, index)

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
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        max_m: float = 0.5,
        s: float = 30.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(class_counts, max_m, weight, reduction, ignore_index)
        self.s = check_range("s", s, 0.0, low_open=True)

    def cross_entropy_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        """``s·(z − Δ_y·e_y)``; the base class takes its cross-entropy with torch's kernel."""
        z = float_logits(logits)
        index = index_target(target, z.shape[-1])
        margin = self._target_margins(z, index)
        scaled = self.s * z
        # Subtracting the constant s·Δ_y at the target leaves the gradient unchanged, so it
        # needs no autograd node: done in place, through a detached alias, on the fresh s·z
        # (whose backward saves nothing).
        scaled.detach().scatter_add_(1, index.unsqueeze(1), margin.mul_(-self.s).unsqueeze(1))
        return scaled

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
        ignore_index: a target value whose samples contribute nothing (torch's −100).
    """

    def __init__(
        self,
        class_counts: Sequence[int] | Tensor | None = None,
        max_m: float = 0.5,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(class_counts, max_m, weight, reduction, ignore_index)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        # With w = z − Δ_y·e_y and k = argmax_j w_j, the loss is w_k − w_y:
        # max_{j≠y} z_j − z_y + Δ_y when that is positive, else 0 (then k = y). Only the argmax
        # needs all of w; the loss itself gathers two logits, so its backward is one scatter.
        z = float_logits(logits)
        index = index_target(target, z.shape[-1])
        margin = self._target_margins(z, index)
        with torch.no_grad():
            top = z.scatter_add(1, index.unsqueeze(1), -margin.unsqueeze(1)).max(dim=1).indices
        pair = z.gather(1, torch.stack((top, index), dim=1))
        return pair[:, 0] - pair[:, 1] + margin * (top != index)
