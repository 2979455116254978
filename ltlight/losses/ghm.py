"""GHM-C: weight each element by the inverse density of its gradient norm (Li et al., 2019)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_range
from ltlight.losses.base import LongTailLoss, dense_target, float_logits


def _count_per_bin(bin_of_element: Tensor, bins: int) -> tuple[Tensor, Tensor]:
    """Integer bin indices (from whole-number floats in [0, bins)) and the count per bin.

    ``torch.bincount`` on the CPU (int32 indices: half the memory traffic). On CUDA bincount
    reads its input's min and max back to the host, a sync every step, so there one
    ``scatter_add_`` of ones into ``bins`` counters does it instead.
    """
    if bin_of_element.device.type == "cpu":
        index = bin_of_element.int()
        return index, torch.bincount(index, minlength=bins)
    index = bin_of_element.long()
    counts = torch.zeros(bins, dtype=torch.int64, device=index.device)
    return index, counts.scatter_add_(0, index, torch.ones_like(index))


def _float32_floor_is_exact(bins: int) -> bool:
    """Whether ``floor(g·bins)`` in float32 puts every ``g`` in [0, 1] in mmdetection's bin.

    mmdetection's bin ``i`` is ``edges[i] <= g < edges[i+1]`` with float32 edges ``i / bins``
    (the last raised by 1e-6). The rounded product ``g·bins`` can only cross an integer when
    ``g`` is within an ulp or two of an edge, so checking every float32 within 8 ulps of every
    edge decides it (it holds for 1–10 bins, not for 11 or 22).
    """
    edges = torch.arange(bins + 1, dtype=torch.float32) / bins
    steps = torch.arange(-8, 9, dtype=torch.int32)
    near = (edges.view(torch.int32)[:, None] + steps).flatten().view(torch.float32)
    near = near[(near >= 0) & (near <= 1)]
    mmdetection_edges = edges.clone()
    mmdetection_edges[-1] += 1e-6
    expected = torch.bucketize(near, mmdetection_edges, right=True) - 1
    return torch.equal((near * bins).floor().clamp_max(bins - 1).long(), expected)


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
    Under DDP (``torch.distributed`` initialised, training mode) the bin counts are summed over
    the ranks before they are used, so ``β`` and the EMA are those of one process seeing the
    whole global batch, identical on every rank (evaluation keeps each rank's own counts: its
    shards may have different numbers of batches, and a collective there could wait forever).

    Paper: Li, Liu, Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. Where the
    official code (mmdetection ``GHMC``) differs: it loops over the bins in Python with an
    ``.item()`` host sync per bin; here every element's bin comes from one arithmetic pass,
    ``floor(g·bins)`` — for bin counts where float32 rounding can put a ``g`` next to an edge
    in the neighbouring bin (11, 22, 100, ...; decided once at construction) corrected against
    the two neighbouring edges, so it agrees exactly with mmdetection's float32 tests
    ``edges[i] <= g < edges[i+1]`` — and all counts from one ``bincount`` (on CUDA, where
    bincount syncs with the host, one ``scatter_add_``); ``β`` enters as BCE's ``weight``. Float
    targets outside [0, 1] (``g > 1``, invalid for BCE) are counted in the last bin, where
    mmdetection leaves them out; mmdetection's ``label_weight`` (ignored elements) has the
    per-class ``weight`` and, for class-index targets, ``ignore_index`` (a row left out of the
    counts, ``tot`` and the mean) and, for float targets, unknown (NaN) entries as counterparts.

    Args:
        bins: number of bins ≥ 1; paper 30 for detection, mmdetection default 10.
        momentum: EMA momentum in [0, 1); 0 uses the current batch's counts only.
        weight: per-class weight on the last axis (length C) or ``None``.
        reduction: ``"mean"`` (over elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
        ignore_index: with class-index targets, a value whose samples (rows) contribute nothing.
    """

    multi_label = True

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, ignore_index=ignore_index)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        self.bins = bins
        self.momentum = check_range("momentum", momentum, 0.0, 1.0, high_open=True)
        self.register_buffer("ema_counts", torch.zeros(bins))
        self._floor_is_exact = _float32_floor_is_exact(bins)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        x = float_logits(logits)
        y = dense_target(x, target)
        kept = target.ne(self.ignore_index).unsqueeze(1) if target.dim() == 1 else None
        if target.dim() == 2 and target.is_floating_point():
            kept = target.isnan().logical_not_()  # unknown entries are left out of the counts
        with torch.no_grad():
            beta = self._harmonizing_weights(torch.sigmoid(x).sub_(y).abs_(), kept)
            if kept is not None:  # their looked-up β may be inf (an empty bin): inf·0 is NaN
                beta = beta.masked_fill_(~kept, 0.0)
        return F.binary_cross_entropy_with_logits(x, y, weight=beta, reduction="none")

    def _harmonizing_weights(self, g: Tensor, kept: Tensor | None) -> Tensor:
        """``β = tot / density(bin) / n`` for every element of ``g = |σ(x) − y|``.

        ``kept`` marks the rows not ignored (class-index targets) or the known entries (float
        targets, NaN unknown); the others go to an extra, uncounted bin. In training under
        ``torch.distributed`` the counts are all-reduced, so every rank sees the histogram of the
        whole global batch (and keeps the same EMA).
        """
        bins = self.bins
        g = torch.nan_to_num_(g)  # NaN logits: bin 0 (their loss is NaN anyway)
        if self._floor_is_exact and g.dtype == torch.float32:
            index = g.mul_(bins).clamp_max_(bins - 1)  # int conversion truncates: floor, g >= 0
        else:
            # floor(g·bins) can be one bin off within an ulp of an edge; the neighbouring edges,
            # computed exactly as mmdetection computes them, fix it: floor(g − edge) is 0 at or
            # above the edge and −1 below it (|g − edge| < 1). Adding floats is faster than
            # adding up comparison results.
            guess = (g * bins).floor_()
            lower, upper = guess / bins, (guess + 1) / bins
            index = guess.add_((g - lower).floor_()).add_((g - upper).floor_()).add_(1)
            index = index.clamp_max_(bins - 1)  # g = 1 is in the last bin
        if kept is not None:  # ignored rows: counted in an extra bin, then looked up anywhere
            index = index.masked_fill_(~kept, bins)
        index, counts = _count_per_bin(index.flatten(), bins + 1)
        if kept is not None:
            index = index.clamp_max_(bins - 1)  # their β is dropped by the reduction
        counts = counts[:bins].to(g.dtype)
        if self.training and _several_processes():
            torch.distributed.all_reduce(counts)
        tot = counts.sum()

        nonempty = counts > 0
        num_nonempty = nonempty.sum().clamp_min_(1).to(g.dtype)
        if self.momentum > 0:
            ema = self.ema_counts.to(g.dtype)
            density = torch.where(nonempty, self.momentum * ema + (1 - self.momentum) * counts, ema)
            if self.training:
                self.ema_counts.copy_(density)
        else:
            density = counts
        # A bin empty in this batch is never looked up; clamping keeps its entry finite.
        per_bin = tot / (density.clamp_min(torch.finfo(g.dtype).tiny) * num_nonempty)
        return per_bin.index_select(0, index).view_as(g)

    def extra_repr(self) -> str:
        return f"bins={self.bins}, momentum={self.momentum}, {super().extra_repr()}"


def _several_processes() -> bool:
    """Whether ``torch.distributed`` runs this loss in more than one process (DDP)."""
    distributed = torch.distributed
    return (
        distributed.is_available()
        and distributed.is_initialized()
        and (distributed.get_world_size() > 1)
    )
