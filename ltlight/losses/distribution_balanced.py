"""Distribution-Balanced loss: re-balanced weighting and negative-tolerant regularisation for
long-tailed multi-label data (Wu et al., ECCV 2020)."""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_integer, check_range
from ltlight.losses.base import LongTailLoss, dense_target, float_logits
from ltlight.losses.focal import _modulating_factor


class DistributionBalancedLoss(LongTailLoss):
    """DB-Focal: the official ``ResampleLoss`` with re-balanced weighting, logit regularisation
    and focal down-weighting. With ``n_c`` the positives of class ``c`` among the ``N`` training
    images and ``y`` an image's targets, per element:

    * re-balanced weight (the ratio of class-aware to instance sampling probability, smoothed):
      ``r_c = (1/n_c) / Σ_j y_j/n_j``, ``w_c = α + σ(β·(r_c − μ))`` (an image without
      a positive has ``r = ∞``, ``w = α + 1``, as in the official code);
    * negative-tolerant regularisation: a class-specific bias from the prior,
      ``z'_c = z_c + b_c`` with ``b_c = −(κ/λ)·log(N/n_c − 1)``, and a scale ``λ`` on the
      negatives: ``u = z'`` for a positive, ``λ·z'`` for a negative; the weight becomes ``w``
      for a positive and ``w/λ`` for a negative — so a negative costs ``(1/λ)·log(1 + e^{λz'})``;
    * focal: ``p_t = exp(−BCE(u, y))``, and

        ``ℓ_c = balance · (1 − p_t)^γ · w'_c · BCE(u_c, y_c)``   (``w'`` = ``w`` or ``w/λ``).

    Soft targets mix the two cases linearly, exactly as the official expressions
    (``u = z'·(1 − y)·λ + z'·y``). ``"mean"`` averages over the known elements, as the official
    (mmcv) training loop does. The bias and scale are a training device: the model predicts with
    its raw logits ``z`` (the official evaluation; :meth:`label_logits` is the identity).

    Paper: Wu, Huang, Huang, Lin, Wang, "Distribution-Balanced Loss for Multi-Label
    Classification in Long-Tailed Datasets", ECCV 2020; code: wutong16/DistributionBalancedLoss,
    ``mllt/models/losses/resample_loss.py``. Defaults are its VOC-MLT config
    (``configs/voc/LT_resnet50_pfc_DB.py``: α = 0.1, β = 10, μ = 0.3, κ = 0.05, λ = 5, γ = 2,
    balance 2); its COCO-MLT config takes μ = 0.2, λ = 2. Where it deviates: the official
    code's ``r`` formula is used (the paper's ``1/C`` factors cancel there); the class counts and
    ``N`` come from the training split (the official reads ``class_freq.pkl``); unknown (NaN)
    targets are left out of the loss and count as 0 in ``r``.

    Args:
        class_counts: training positives per class ``n_c``; given by the module at set-up.
        num_samples: training images ``N`` (> every ``n_c``); given by the module at set-up
            from the datamodule's ``num_train_samples``, or here.
        alpha: ``α`` ≥ 0, the weight's floor.
        beta: ``β`` ≥ 0, the sharpness of the smoothing sigmoid.
        mu: ``μ``, the ratio where the smoothing sigmoid is ½.
        bias_scale: ``κ`` ≥ 0 of the prior bias (0: no bias).
        negative_scale: ``λ`` > 0 on the negatives' logits (1: none).
        gamma: focal ``γ`` ≥ 0 (0 with ``balance = 1``: no focal term).
        balance: the official ``balance_param``, a factor > 0 of the focal loss.
        rebalance: use the re-balanced weight ``w`` (``False``: ``w = 1``).
        weight: per-class weight on the last axis (length C) or ``None`` (DRW sets it).
        reduction: ``"mean"`` (over known elements), ``"sum"`` or ``"none"`` (shape ``(N, C)``).
        ignore_index: with class-index targets, a value whose samples (rows) contribute nothing.

    Example:
        >>> import torch
        >>> loss = DistributionBalancedLoss(class_counts=[40, 5], num_samples=50)
        >>> loss(torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [1.0, 1.0]])).shape
        torch.Size([])
    """

    multi_label = True
    requires_class_counts = True
    count_constants = ("inverse_counts", "prior_bias")

    def __init__(
        self,
        class_counts: Sequence[int] | None = None,
        num_samples: int | None = None,
        alpha: float = 0.1,
        beta: float = 10.0,
        mu: float = 0.3,
        bias_scale: float = 0.05,
        negative_scale: float = 5.0,
        gamma: float = 2.0,
        balance: float = 2.0,
        rebalance: bool = True,
        weight: Tensor | Sequence[float] | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__(
            weight=weight, reduction=reduction, class_counts=class_counts, ignore_index=ignore_index
        )
        self.num_samples = check_integer("num_samples", num_samples, 2, optional=True)
        self.alpha = check_range("alpha", alpha, 0.0)
        self.beta = check_range("beta", beta, 0.0)
        self.mu = check_range("mu", mu, -math.inf)
        self.bias_scale = check_range("bias_scale", bias_scale, 0.0)
        self.negative_scale = check_range("negative_scale", negative_scale, 0.0, low_open=True)
        self.gamma = check_range("gamma", gamma, 0.0)
        self.balance = check_range("balance", balance, 0.0, low_open=True)
        self.rebalance = bool(rebalance)
        if self.class_counts is not None and self.num_samples is not None:
            self._check_num_samples(self.class_counts, self.num_samples)

    def set_num_samples(self, num_samples: int) -> None:
        """Give the loss the number of training images ``N`` (the prior is ``n_c / N``)."""
        self.num_samples = check_integer("num_samples", num_samples, 2)
        self._fill_constants()

    def _fill_constants(self) -> None:
        if self.class_counts is not None and self.num_samples is not None:
            self._check_num_samples(self.class_counts, self.num_samples)
            super()._fill_constants()

    @staticmethod
    def _check_num_samples(counts: Tensor, num_samples: int) -> None:
        if int(counts.max()) >= num_samples:
            raise ValueError(
                f"num_samples must exceed every class count (the prior bias takes "
                f"log(N/n_c − 1)), got num_samples={num_samples} and a class with "
                f"{int(counts.max())} positives"
            )

    def derive_from_counts(self, counts: Tensor) -> dict[str, Tensor]:
        prior_bias = -(self.bias_scale / self.negative_scale) * torch.log(
            self.num_samples / counts - 1
        )
        return {"inverse_counts": counts.reciprocal(), "prior_bias": prior_bias}

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        self._counts_for(logits)
        if self.num_samples is None:
            raise RuntimeError(
                "DistributionBalancedLoss needs the number of training images: pass "
                "num_samples=N, call loss.set_num_samples(N), or train it in "
                "ltlight.LongTailModule with a datamodule that has `num_train_samples`"
            )
        x = float_logits(logits)
        y = dense_target(x, target)
        if self.rebalance:
            inverse = self.inverse_counts.to(x.dtype)
            # Σ_j y_j/n_j (unknown entries are 0 in y); an image without a positive: r → ∞
            # (w = α + 1), kept finite for any β
            denominator = (y @ inverse).clamp_min(torch.finfo(x.dtype).tiny)
            r = inverse / denominator.unsqueeze(1)
            weight = self.alpha + torch.sigmoid(self.beta * (r - self.mu))
        else:
            weight = torch.ones_like(x)
        z = x + self.prior_bias.to(x.dtype)
        scale = self.negative_scale
        u = z * (1 - y) * scale + z * y
        weight = weight / scale * (1 - y) + weight * y
        if self.gamma == 0 and self.balance == 1:
            return F.binary_cross_entropy_with_logits(u, y, weight=weight, reduction="none")
        bce = F.binary_cross_entropy_with_logits(u, y, reduction="none")
        focal = _modulating_factor(-torch.expm1(-bce), self.gamma)  # (1 − p_t)^γ
        return self.balance * focal * weight * bce

    def label_logits(self, logits: Tensor) -> Tensor:
        """The logits whose sigmoids are the label probabilities: the raw ``z``, as the official
        evaluation (the bias ``b`` and scale ``λ`` only shape training)."""
        return logits

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, mu={self.mu}, bias_scale={self.bias_scale}, "
            f"negative_scale={self.negative_scale}, gamma={self.gamma}, balance={self.balance}, "
            f"{super().extra_repr()}"
        )
