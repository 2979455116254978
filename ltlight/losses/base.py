"""The one mechanism every loss shares: per-class weight, ignored targets, reduction, class counts.

A loss says what its per-sample value ``ℓ_i`` is, in one of two ways:

* :meth:`LongTailLoss.cross_entropy_logits` — the logits whose softmax cross-entropy *is* ``ℓ_i``
  (cross-entropy, LDAM, logit-adjusted, balanced softmax). The base class then hands them to
  ``F.cross_entropy`` with the weight, ``ignore_index`` and reduction: torch's own fused kernel;
* :meth:`LongTailLoss.per_sample` — ``ℓ_i`` itself (focal, TaiLr, the hinge, sigmoid losses).

Either way the result is exactly what ``F.cross_entropy(weight=w, ignore_index=k, reduction=...)``
computes, with ``v_i = 0`` for a sample whose target is ``ignore_index`` and ``v_i = 1`` otherwise:

* ``"none"``: ``v_i · w_{y_i} · ℓ_i`` (0 for an ignored sample)
* ``"sum"``:  ``Σ_i v_i · w_{y_i} · ℓ_i``
* ``"mean"``: ``Σ_i v_i · w_{y_i} · ℓ_i / Σ_i v_i · w_{y_i}`` (the weighted mean; with DRW this *is*
  the learning-rate re-normalisation of Cao et al. 2019, Algorithm 1; NaN if every sample is
  ignored, as in torch)

Losses on sigmoid outputs (multi-label) return ``ℓ_ic`` shaped like the logits; there the weight
is per class on the last axis, an ignored sample (class-index targets only) drops its whole row,
and ``"mean"`` is the plain mean over the remaining elements (torchvision's convention). DRW and
every other re-balancing callback therefore work with a new loss without knowing anything about
it.

Multi-label targets are float ``(N, C)``: 1 a positive, 0 a negative, NaN *unknown* (an
"uncertain" or missing label of a CXR-style file): an unknown entry contributes nothing —
``"none"`` returns 0 there, ``"sum"`` leaves it out and ``"mean"`` divides by the number of
known entries. A single-label loss (a softmax over the classes) refuses such targets.
"""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.checks import check_choice, check_class_counts, check_integer

REDUCTIONS = ("mean", "sum", "none")


def float_logits(logits: Tensor) -> Tensor:
    """``logits`` in at least float32: softmax and log-space terms under bf16/fp16 autocast
    overflow or lose the small probabilities; float64 stays float64 (gradcheck)."""
    if logits.dtype in (torch.float32, torch.float64):
        return logits
    return logits.float()


def index_target(target: Tensor, num_classes: int) -> Tensor:
    """``target`` with every entry in ``[0, num_classes)``, for indexing per-class tensors.

    An ignored sample's entry (``ignore_index``, e.g. −100) becomes a valid class; its value is
    then computed for nothing and dropped by the shared reduction. No comparison, no host sync.
    """
    return target.clamp(0, num_classes - 1)


def dense_target(logits: Tensor, target: Tensor) -> Tensor:
    """Targets of a sigmoid (multi-label) loss shaped like ``logits``, in their dtype.

    Class indices ``(N,)`` are one-hot encoded; float targets ``(N, C)`` pass through with their
    unknown (NaN) entries as 0, so the per-element values stay finite (the reduction drops them).
    """
    if target.shape == logits.shape:
        return target.to(logits.dtype).nan_to_num(0.0)
    if target.dim() == 1 and target.shape[0] == logits.shape[0] and not target.is_floating_point():
        # ignored samples (ignore_index) get a valid row here; the reduction drops it
        return F.one_hot(index_target(target, logits.shape[-1]), logits.shape[-1]).to(logits.dtype)
    raise ValueError(
        f"target must be class indices of shape ({logits.shape[0]},) or a float tensor shaped "
        f"like the logits {tuple(logits.shape)}, got shape {tuple(target.shape)} "
        f"and dtype {target.dtype}"
    )


class LongTailLoss(nn.Module):
    """Base class: a subclass implements :meth:`cross_entropy_logits` or :meth:`per_sample`.

    Constants a loss derives from the class counts (LDAM's margins, the log-prior) are named in
    ``count_constants`` and computed by :meth:`derive_from_counts`; the base class keeps them as
    non-persistent buffers (``.to()`` moves them, checkpoints load whether or not counts were
    set) and fills them once counts are known — also when they come through this constructor,
    before the subclass has set its own arguments: they are derived when first read.

    Args:
        weight: per-class weight ``w`` (length C) or ``None``; may be set later
            (``loss.weight = w``), which is what :class:`~ltlight.callbacks.DeferredReweighting`
            does. A non-persistent buffer: it moves with ``.to()`` / ``.double()``.
        reduction: ``"mean"`` (weighted mean), ``"sum"`` or ``"none"``.
        class_counts: training samples per class; only losses with ``requires_class_counts``
            need them, and :class:`~ltlight.LongTailModule` hands them over from the datamodule.
        ignore_index: a target value whose samples contribute nothing (torch's convention, −100).

    Example:
        >>> import torch
        >>> from ltlight.losses import CrossEntropyLoss
        >>> logits, target = torch.zeros(3, 4), torch.tensor([0, -100, 2])
        >>> round(float(CrossEntropyLoss(weight=[1.0, 1.0, 3.0, 1.0])(logits, target)), 4)
        1.3863
    """

    #: Set by subclasses whose formula uses the class counts (LDAM, logit-adjusted, ...).
    requires_class_counts: bool = False
    #: ``True`` for losses on independent sigmoids (``ℓ`` per element, float targets allowed).
    multi_label: bool = False
    #: Names of the buffers :meth:`derive_from_counts` fills.
    count_constants: tuple[str, ...] = ()

    def __init__(
        self,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        class_counts: Sequence[int] | Tensor | None = None,
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        check_choice("reduction", reduction, REDUCTIONS)
        ignore_index = check_integer("ignore_index", ignore_index)
        self.reduction = reduction
        self.ignore_index = ignore_index
        # Empty means "no weight"; a tensor either way, so it always sits on the module's device.
        self.register_buffer("_weight", torch.empty(0), persistent=False)
        self.weight = weight
        for name in self.count_constants:
            self.register_buffer(name, torch.empty(0), persistent=False)
        self._cross_entropy_form = type(self).per_sample is LongTailLoss.per_sample
        self.class_counts: Tensor | None = None
        self._constants_pending = False
        if class_counts is not None:
            self.class_counts = check_class_counts(class_counts)
            # The subclass's own arguments (max_m, tau) are set after this constructor returns.
            self._constants_pending = bool(self.count_constants)

    # -- per-class weight -------------------------------------------------------------------
    @property
    def weight(self) -> Tensor | None:
        weight = self._weight
        return None if weight.numel() == 0 else weight

    @weight.setter
    def weight(self, value: Tensor | Sequence[float] | None) -> None:
        current = self._buffers["_weight"]
        # float32 at least: under .half() / bf16-true the weights would lose their small ratios
        dtype = current.dtype if current.dtype == torch.float64 else torch.float32
        if value is None:
            self._weight = torch.empty(0, dtype=dtype, device=current.device)
            return
        weight = torch.as_tensor(value).detach()
        if weight.dim() != 1 or weight.numel() == 0:
            raise ValueError(
                f"weight must be 1-D (one value per class), got shape {tuple(weight.shape)}"
            )
        if not bool(torch.all(torch.isfinite(weight) & (weight >= 0))):
            raise ValueError(f"weight must be finite and >= 0, got {weight.tolist()}")
        self._weight = weight.to(device=current.device, dtype=dtype)

    # -- class counts -----------------------------------------------------------------------
    def set_class_counts(self, class_counts: Sequence[int] | Tensor) -> None:
        """Give the loss the training class counts ``n_j``; fills the ``count_constants``."""
        self.class_counts = check_class_counts(class_counts)
        self._fill_constants()

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        """The constants named in ``count_constants`` from the float64 class counts."""
        return {}

    def _fill_constants(self) -> None:
        self._constants_pending = False
        if self.class_counts is None or not self.count_constants:
            return
        derived = self.derive_from_counts(self.class_counts.to(torch.float64))
        for name in self.count_constants:
            current = self._buffers[name]
            self._buffers[name] = derived[name].to(device=current.device, dtype=current.dtype)

    def __getattr__(self, name: str) -> Any:
        # Buffers are reached through here: derive constants pending from the constructor.
        if name in type(self).count_constants and self.__dict__.get("_constants_pending"):
            self._fill_constants()
        return super().__getattr__(name)

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

    # -- what subclasses write (one of the two) ---------------------------------------------
    def cross_entropy_logits(self, logits: Tensor, target: Tensor) -> Tensor:
        """Logits ``u`` with ``ℓ_i = −log softmax(u_i)_{y_i}``; the identity is cross-entropy."""
        return float_logits(logits)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        """Unweighted, unreduced loss ``ℓ_i`` of shape ``(N,)`` (or ``(N, C)`` if multi-label).

        A sample whose target is ``ignore_index`` may get any finite value (index per-class
        tensors with :func:`index_target`): the reduction drops it.
        """
        return F.cross_entropy(
            self.cross_entropy_logits(logits, target),
            target,
            reduction="none",
            ignore_index=self.ignore_index,
        )

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

    def label_logits(self, logits: Tensor) -> Tensor:
        """Multi-label data: the logits whose sigmoids are the label probabilities (the
        identity unless the loss trains on a transform of them)."""
        return logits

    # -- the shared weighting and reduction -------------------------------------------------
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (N, C), got shape {tuple(logits.shape)}")
        if not self.multi_label and target.dim() != 1:
            raise ValueError(
                f"{type(self).__name__} is a single-label loss (a softmax over the classes): "
                f"target must be class indices of shape ({logits.shape[0]},), got shape "
                f"{tuple(target.shape)} ({target.dtype}); for multi-label targets (N, C) use a "
                "sigmoid loss: BinaryCrossEntropyLoss, AsymmetricLoss, DistributionBalancedLoss, "
                "SigmoidFocalLoss or GHMCLoss"
            )
        weight = self._weight_for(logits)
        if self._cross_entropy_form:  # torch's fused kernel does weight, ignore and reduction
            return F.cross_entropy(
                self.cross_entropy_logits(logits, target),
                target,
                weight=weight,
                ignore_index=self.ignore_index,
                reduction=self.reduction,
            )
        losses = self.per_sample(logits, target)
        if losses.dim() == 2:
            return self._reduce_elements(losses, target, weight)
        # v_i·w_{y_i} in one kernel that treats ignore_index (and bad targets) exactly as
        # cross_entropy does: nll_loss picks −input[i, y_i] from the broadcast weight row.
        per_class = weight if weight is not None else losses.new_ones(())
        sample_weight = F.nll_loss(
            per_class.expand(losses.shape[0], logits.shape[-1]),
            target,
            ignore_index=self.ignore_index,
            reduction="none",
        ).neg_()
        if self.reduction == "none":
            return losses * sample_weight
        total = torch.dot(losses, sample_weight)
        return total if self.reduction == "sum" else total / sample_weight.sum()

    def _reduce_elements(self, losses: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        """Multi-label: weight per class on the last axis; an ignored sample drops its row, an
        unknown (NaN) target entry its element."""
        if weight is not None:
            losses = losses * weight.to(losses.dtype)
        if target.dim() == 1:  # class indices: rows of ignored samples count for nothing
            kept = target.ne(self.ignore_index).to(losses.dtype)
            losses = losses * kept.unsqueeze(1)
            if self.reduction == "mean":
                return losses.sum() / (kept.sum() * losses.shape[1])
        elif target.is_floating_point():  # float targets: NaN entries are unknown
            known = target.isnan().logical_not_()
            losses = torch.where(known, losses, 0.0)
            if self.reduction == "mean":
                return losses.sum() / known.sum()
        if self.reduction == "none":
            return losses
        return losses.sum() if self.reduction == "sum" else losses.mean()

    def _weight_for(self, logits: Tensor) -> Tensor | None:
        weight = self.weight
        if weight is None:
            return None
        if weight.numel() != logits.shape[-1]:
            raise ValueError(
                f"{type(self).__name__}.weight has {weight.numel()} entries but the logits have "
                f"{logits.shape[-1]} classes"
            )
        return weight.to(float_logits(logits).dtype)

    def extra_repr(self) -> str:
        ignore = "" if self.ignore_index == -100 else f", ignore_index={self.ignore_index}"
        return f"reduction={self.reduction!r}{ignore}"
