"""GHM-C: weight each element by the inverse density of its gradient norm (Li et al., 2019)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.losses.base import LongTailLoss, check_range, dense_target, float_logits


class GHMCLoss(LongTailLoss):
    """Gradient-harmonized classification loss on sigmoid outputs (mmdetection's ``GHMC``).

    Per element: ``g = |σ(x) − y|`` (no gradient flows through it) falls into one of ``bins``
    equal bins over [0, 1] (``[i/bins, (i+1)/bins)``, the last edge raised by 1e-6 so ``g = 1``
    is counted). A bin's density is its count in the current batch — or, with
    ``momentum > 0``, an exponential moving average of counts kept in the ``ema_counts`` buffer,
    which starts at zero and is updated only for the bins non-empty in this batch:
    ``ema ← m·ema + (1 − m)·count``. Then

        ``β = tot / density(bin) / n``,  ``ℓ_ic = β · BCEwithlogits(x_ic, y_ic)``

    with ``tot`` the number of elements and ``n`` the number of bins non-empty *in this batch*;
    ``"mean"`` divides the sum by ``tot``. Targets are class indices (one-hot encoded) or floats
    in [0, 1] shaped like the logits; a per-class ``weight`` multiplies ``ℓ_ic``.

    The EMA is updated only in training mode (``loss.train()``, which Lightning sets in the
    training loop): in eval mode the weights are computed the same way, with the would-be
    updated densities, but the buffer is left unchanged, so validation does not shift the
    training statistics. ``ema_counts`` is a persistent buffer: it is saved in checkpoints.

    Paper: Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. Where the
    official code (mmdetection ``GHMC``) differs: it loops over the bins in Python with an
    ``.item()`` host sync per bin; here every element's bin comes from one arithmetic pass
    (``floor(g·bins)``, corrected against the two neighbouring edges so that it agrees exactly
    with mmdetection's float32 tests ``edges[i] <= g < edges[i+1]``), and all counts from one
    ``scatter_add_`` — ``torch.bincount`` would do on the CPU, but on CUDA it reads the input's
    min and max back to the host, a sync every step. ``β`` enters as BCE's ``weight``. Float
    targets outside [0, 1] (``g > 1``, invalid for BCE) are counted in the last bin, where
    mmdetection leaves them out; mmdetection's ``label_weight`` (ignored elements) has no
    counterpart (use the per-class ``weight``).

    Args:
        bins: number of bins ≥ 1; paper 30 for detection, mmdetection default 10.
        momentum: EMA momentum in [0, 1); 0 uses the current batch's counts only.
        weight: per-class weight on the last axis (length C) or ``None``.
        reduction: ``"mean"`` (over elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
    """

    multi_label = True

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(weight=weight, reduction=reduction)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        self.bins = bins
        self.momentum = check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        self.register_buffer("ema_counts", torch.zeros(bins))

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        x = float_logits(logits)
        y = dense_target(x, target)
        with torch.no_grad():
            beta = self._harmonizing_weights(x, y)
        return F.binary_cross_entropy_with_logits(x, y, weight=beta, reduction="none")

    def _harmonizing_weights(self, x: Tensor, y: Tensor) -> Tensor:
        bins = self.bins
        g = (torch.sigmoid(x) - y).abs_()
        # mmdetection's bin i is edges[i] <= g < edges[i+1] with float32 edges i / bins. The
        # rounded product g·bins can be one bin off within an ulp of an edge; comparing with
        # the two neighbouring edges, computed exactly as mmdetection computes them, fixes it
        # (checked against every float32 near every edge for bins <= 200).
        guess = (g * bins).floor_()
        below = g < guess / bins
        above = g >= (guess + 1) / bins
        index = guess.add_(above).add_(below, alpha=-1)
        index = index.long().clamp_(0, bins - 1).flatten()  # g = 1 is in the last bin
        counts = torch.zeros(bins, dtype=torch.int64, device=g.device)
        counts = counts.scatter_add_(0, index, torch.ones_like(index)).to(g.dtype)

        nonempty = counts > 0
        num_nonempty = nonempty.sum().clamp_min(1).to(g.dtype)
        if self.momentum > 0:
            ema = self.ema_counts.to(g.dtype)
            density = torch.where(nonempty, self.momentum * ema + (1 - self.momentum) * counts, ema)
            if self.training:
                self.ema_counts.copy_(density)
        else:
            density = counts
        # Empty bins may have zero density: divide by 1 there, then zero them out.
        safe_density = torch.where(nonempty, density, torch.ones_like(density))
        per_bin = torch.where(nonempty, x.numel() / safe_density / num_nonempty, 0.0)
        return per_bin.index_select(0, index).view_as(x)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, momentum={self.momentum}, {super().extra_repr()}"
