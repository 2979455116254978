"""Post-hoc calibration state: what the post-hoc callbacks fit, kept as buffers of a small module.

:class:`~ltlight.LongTailModule` owns one :class:`PostHocCalibration` (``module.calibration``):
its buffers move with ``.to()`` and live in every checkpoint (``calibration.*`` keys), so a
calibrated checkpoint predicts calibrated. A checkpoint that carries none of them (saved before
any post-hoc callback ran) loads as uncalibrated.
"""

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ltlight.checks import check_range

#: The buffers and their values before anything is fitted.
_UNFITTED = {
    "temperature": lambda: torch.ones(()),  # T of temperature scaling
    "tau": lambda: torch.zeros(()),  # τ of post-hoc logit adjustment
    "offset": lambda: torch.zeros(0),  # −τ·log π (+ log q), one per class once set
    "classifier_tau": lambda: -torch.ones(()),  # τ of τ-normalisation once applied; −1: not
}


class PostHocCalibration(nn.Module):
    """``logits ↦ (z − τ·log π + log q) / T``: post-hoc logit adjustment, then temperature.

    Menon et al. (ICLR 2021, eq. 9) for the adjustment, Guo et al. (ICML 2017) for ``T``; both
    the identity until set. ``classifier_tau`` only records that τ-normalisation (Kang et al.,
    ICLR 2020) was applied to the classifier's weights, so it is never applied twice.

    Example:
        >>> calibration = PostHocCalibration()
        >>> calibration.set_logit_adjustment(1.0, class_counts=[3, 1])
        >>> calibration.set_temperature(2.0)
        >>> calibration(torch.zeros(1, 2)).tolist()  # (0 − log(3/4), 0 − log(1/4)) / 2
        [[0.143841..., 0.693147...]]
    """

    temperature: Tensor
    tau: Tensor
    offset: Tensor
    classifier_tau: Tensor
    #: The buffers and their values before anything is fitted.
    unfitted: ClassVar = _UNFITTED

    def __init__(self) -> None:
        super().__init__()
        for name, unfitted in self.unfitted.items():
            self.register_buffer(name, unfitted())
        self.register_load_state_dict_pre_hook(match_saved_shapes)

    def set_temperature(self, value: float) -> None:
        """Set ``T`` of temperature scaling (a finite number > 0)."""
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(f"temperature must be a finite number > 0, got {value!r}")
        self.temperature.fill_(float(value))

    def set_logit_adjustment(
        self,
        tau: float,
        class_counts: Sequence[int] | None,
        target_prior: Sequence[float] | Tensor | None = None,
    ) -> None:
        """Predict with ``z − τ·log π (+ log q)``: ``π`` the training class prior, ``q`` a known
        test prior. ``τ = 0`` without ``q`` removes the adjustment.

        Raises:
            ValueError: ``τ < 0``, no class counts, or a prior that is not positive or has
                another length than the counts.
        """
        tau = check_range("tau", tau, 0.0)
        if class_counts is None:
            raise ValueError(
                "logit adjustment needs the training class counts: run the module in a Trainer "
                "with a datamodule that has `class_counts` first"
            )
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        offset = -tau * torch.log(counts / counts.sum())
        if target_prior is not None:
            q = torch.as_tensor(target_prior, dtype=torch.float64).flatten()
            if q.numel() != counts.numel() or not bool(torch.all(q > 0)):
                raise ValueError(
                    f"target_prior must have {counts.numel()} positive entries, got {q.tolist()}"
                )
            offset = offset + torch.log(q / q.sum())
        elif tau == 0:
            offset = offset[:0]
        self.tau.fill_(tau)
        self.offset = offset.to(device=self.offset.device, dtype=torch.float32)

    def adjust(self, logits: Tensor) -> Tensor:
        """``z − τ·log π (+ log q)``, before ``T``; the logits' dtype is kept (float64 fits)."""
        return logits + self.offset.to(logits.dtype) if self.offset.numel() else logits

    def forward(self, logits: Tensor) -> Tensor:
        """The calibrated logits ``(z − τ·log π + log q) / T``."""
        return self.adjust(logits) / self.temperature.to(logits.dtype)


def match_saved_shapes(module: nn.Module, state_dict: dict, prefix: str, *_: Any) -> None:
    """Before loading: a per-class buffer's length is the class count once set, 0 before; a key
    absent from the checkpoint means unfitted (``module.unfitted`` names the buffers)."""
    for name, unfitted in module.unfitted.items():
        saved = state_dict.setdefault(prefix + name, unfitted())
        current = getattr(module, name)
        if saved.shape != current.shape:
            setattr(module, name, torch.zeros_like(saved, device=current.device))
