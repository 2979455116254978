"""The one mechanism every loss shares: per-class weight, reduction and class counts.

A loss computes its per-sample values ``ℓ_i`` in :meth:`LongTailLoss.per_sample`; this base class
applies the per-class weight and the reduction exactly as ``F.cross_entropy(weight=...)`` does:

* ``"none"``: ``w_{y_i} · ℓ_i``
* ``"sum"``:  ``Σ_i w_{y_i} · ℓ_i``
* ``"mean"``: ``Σ_i w_{y_i} · ℓ_i / Σ_i w_{y_i}`` (the weighted mean; with DRW this *is* the
  learning-rate re-normalisation of Cao et al. 2019, Algorithm 1)

Losses on sigmoid outputs (multi-label) return ``ℓ_ic`` shaped like the logits; there the weight
is per class on the last axis and ``"mean"`` is the plain mean of the weighted elements
(torchvision's convention). DRW and every other re-balancing callback therefore work with a new
loss without knowing anything about it.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("mean", "sum", "none")


def check_class_counts(class_counts: Sequence[int] | Tensor) -> Tensor:
    """Return ``class_counts`` as a 1-D int64 tensor; raise ``ValueError`` saying what is wrong."""
    try:
        counts = torch.as_tensor(class_counts)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"class_counts must be a 1-D sequence of positive integers, got {class_counts!r}"
        ) from error
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(
            f"class_counts must be a non-empty 1-D sequence of positive integers, "
            f"got shape {tuple(counts.shape)}"
        )
    if counts.is_complex() or counts.dtype == torch.bool:
        raise ValueError(f"class_counts must be integers, got dtype {counts.dtype}")
    if counts.is_floating_point() and not bool(
        torch.all(torch.isfinite(counts) & (counts == counts.round()))
    ):
        raise ValueError(f"class_counts must be integers, got {counts.tolist()}")
    counts = counts.to(torch.int64)
    if bool(torch.any(counts < 1)):
        bad = [(i, int(c)) for i, c in enumerate(counts.tolist()) if c < 1]
        raise ValueError(
            f"class_counts must be positive integers (>= 1), got {bad[:5]} as (class, count); "
            "an empty class cannot be re-balanced: drop it or give it at least one sample"
        )
    return counts


def check_range(
    name: str,
    value: float,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise a ``ValueError``.

    The message names the argument, the value received and the allowed range, e.g.
    ``"gamma must be in [0, 1], got 1.5"``; NaN is never in range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    above = value > low if low_open else value >= low
    below = value < high if high_open or high == math.inf else value <= high
    if not (above and below):
        if high == math.inf:
            allowed = f"{'>' if low_open else '>='} {low:g}"
        else:
            allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


def float_logits(logits: Tensor) -> Tensor:
    """``logits`` in at least float32: softmax and log-space terms under bf16/fp16 autocast
    overflow or lose the small probabilities; float64 stays float64 (gradcheck)."""
    if logits.dtype in (torch.float32, torch.float64):
        return logits
    return logits.float()


def dense_target(logits: Tensor, target: Tensor) -> Tensor:
    """Targets of a sigmoid (multi-label) loss shaped like ``logits``, in their dtype.

    Class indices ``(N,)`` are one-hot encoded; float targets ``(N, C)`` pass through.
    """
    if target.shape == logits.shape:
        return target.to(logits.dtype)
    if target.dim() == 1 and target.shape[0] == logits.shape[0] and not target.is_floating_point():
        return F.one_hot(target, logits.shape[-1]).to(logits.dtype)
    raise ValueError(
        f"target must be class indices of shape ({logits.shape[0]},) or a float tensor shaped "
        f"like the logits {tuple(logits.shape)}, got shape {tuple(target.shape)} "
        f"and dtype {target.dtype}"
    )


class LongTailLoss(nn.Module):
    """Base class: subclasses implement :meth:`per_sample` and nothing else.

    Args:
        weight: per-class weight ``w`` (length C) or ``None``; may be set later
            (``loss.weight = w``), which is what :class:`~ltlight.callbacks.DeferredReweighting`
            does.
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
        class_counts: training samples per class; only losses with ``requires_class_counts``
            need them, and :class:`~ltlight.LongTailModule` hands them over from the datamodule.
    """

    #: Set by subclasses whose formula uses the class counts (LDAM, logit-adjusted, ...).
    requires_class_counts: bool = False
    #: ``True`` for losses on independent sigmoids (``ℓ`` per element, float targets allowed).
    multi_label: bool = False

    def __init__(
        self,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        class_counts: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self.weight = weight
        self.class_counts: Tensor | None = None
        if class_counts is not None:
            self.set_class_counts(class_counts)

    # -- per-class weight -------------------------------------------------------------------
    @property
    def weight(self) -> Tensor | None:
        return self._weight

    @weight.setter
    def weight(self, value: Tensor | Sequence[float] | None) -> None:
        if value is None:
            self._weight = None
            return
        weight = torch.as_tensor(value, dtype=torch.get_default_dtype())
        if weight.dim() != 1:
            raise ValueError(f"weight must be 1-D (one value per class), got {tuple(weight.shape)}")
        if not bool(torch.all(torch.isfinite(weight) & (weight >= 0))):
            raise ValueError(f"weight must be finite and >= 0, got {weight.tolist()}")
        self._weight = weight

    # -- class counts -----------------------------------------------------------------------
    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Give the loss the training class counts ``n_j``.

        Subclasses derive their constants here (as non-persistent buffers, so ``.to(device)``
        moves them and a checkpoint loads whether or not counts were set) and call ``super()``.
        """
        self.class_counts = check_class_counts(class_counts)

    def _register_derived(self, name: str) -> None:
        """Declare a constant derived from the class counts (margins, log-priors).

        A non-persistent buffer: ``module.to(device)`` moves it, and a checkpoint loads whether
        or not counts were set when it was saved. It starts empty so that it already sits on
        the module's device and dtype when :meth:`set_class_counts` fills it.
        """
        self.register_buffer(name, torch.empty(0), persistent=False)

    def _set_derived(self, name: str, value: Tensor) -> None:
        """Fill the derived buffer ``name`` on the device and in the dtype it already has."""
        current = getattr(self, name)
        setattr(self, name, value.to(device=current.device, dtype=current.dtype))

    def _counts_for(self, logits: Tensor) -> Tensor:
        """The class counts, checked against the logits' class dimension (a shape check only)."""
        if self.class_counts is None:
            raise RuntimeError(
                f"{type(self).__name__} needs the training class counts: pass "
                f"class_counts=[n_0, n_1, ...] to its constructor, call "
                f"loss.set_class_counts(counts), or train it in ltlight.LongTailModule with a "
                f"datamodule that has a `class_counts` attribute"
            )
        if self.class_counts.numel() != logits.shape[-1]:
            raise ValueError(
                f"{type(self).__name__} has class_counts for {self.class_counts.numel()} classes "
                f"but the logits have {logits.shape[-1]} classes"
            )
        return self.class_counts

    # -- what subclasses write --------------------------------------------------------------
    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        """Unweighted, unreduced loss ``ℓ_i`` of shape ``(N,)`` (or ``(N, C)`` if multi-label)."""
        raise NotImplementedError

    def predictive_logits(self, logits: Tensor) -> Tensor:
        """Logits whose softmax is the model's predictive distribution (for ECE, reliability).

        The identity by default; a loss that trains on a transform of the logits (LDAM's ``s·z``)
        returns that transform. A sigmoid (``multi_label``) loss trained independent sigmoids:
        its distribution is the normalised sigmoids ``σ(z_j) / Σ_k σ(z_k)``, i.e. the softmax of
        ``log σ(z)``, which is returned (not a softmax of the raw ``z``).
        """
        if self.multi_label:
            return F.logsigmoid(float_logits(logits))
        return logits

    # -- the shared weighting and reduction -------------------------------------------------
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
        losses = self.per_sample(logits, target)
        weight = self._weight
        if weight is None:
            return self._reduce(losses)
        self._check_weight(weight, logits)
        if weight.device != losses.device:  # once, not every step
            self._weight = weight = weight.to(losses.device)
        weight = weight.to(losses.dtype)
        if losses.dim() == 2:  # multi-label: per element, weight per class on the last axis
            return self._reduce(losses * weight)
        sample_weight = weight[target]
        return self._reduce(losses * sample_weight, sample_weight)

    def _reduce(self, losses: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """``"mean"`` divides by ``Σ w_y`` with per-sample weights, else by the count."""
        if self.reduction == "none":
            return losses
        if self.reduction == "sum":
            return losses.sum()
        return losses.mean() if sample_weight is None else losses.sum() / sample_weight.sum()

    def _check_weight(self, weight: Tensor, logits: Tensor) -> None:
        if weight.numel() != logits.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}.weight has {weight.numel()} entries but the logits have "
                f"{logits.shape[-1]} classes"
            )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
