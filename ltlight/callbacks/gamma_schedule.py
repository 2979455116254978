"""A schedule for TaiLr's γ (Ji et al., "Tailoring Language Generation Models under Total
Variation Distance", ICLR 2023): γ rises from ``start_gamma`` to ``end_gamma`` between two epochs,
so training starts as cross-entropy (γ = 0) and ends closer to the total-variation loss.
"""

import math

import lightning as L

from ltlight.callbacks._epoch_switch import EpochScheduleCallback, check_epoch
from ltlight.losses.base import check_range

MODES = ("linear", "cosine")


class TaiLrGammaSchedule(EpochScheduleCallback):
    """Set ``module.loss.gamma`` once per epoch.

    With ``p = clamp((epoch − start_epoch) / (end_epoch − start_epoch), 0, 1)``:
    linear ``γ = γ_0 + (γ_1 − γ_0)·p``; cosine ``γ = γ_0 + (γ_1 − γ_0)·(1 − cos(π p))/2``.

    Args:
        start_gamma: γ up to ``start_epoch``, in ``[0, 1]``.
        end_gamma: γ from ``end_epoch`` on, in ``[0, 1]``.
        start_epoch: epoch where γ starts to move, ``>= 0``.
        end_epoch: epoch where γ reaches ``end_gamma``, ``>= start_epoch``.
        mode: ``"linear"`` or ``"cosine"``.
    """

    def __init__(
        self,
        start_gamma: float = 0.0,
        end_gamma: float = 0.5,
        start_epoch: int = 0,
        end_epoch: int = 100,
        mode: str = "linear",
    ) -> None:
        for name, value in (("start_gamma", start_gamma), ("end_gamma", end_gamma)):
            check_range(name, value, 0.0, 1.0)
        check_epoch("start_epoch", start_epoch)
        check_epoch("end_epoch", end_epoch, minimum=start_epoch, minimum_name="start_epoch")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.start_gamma = start_gamma
        self.end_gamma = end_gamma
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.mode = mode

    def gamma_at(self, epoch: int) -> float:
        """γ used during ``epoch``."""
        span = self.end_epoch - self.start_epoch
        progress = 1.0 if span == 0 else (epoch - self.start_epoch) / span
        progress = min(max(progress, 0.0), 1.0)
        if self.mode == "cosine":
            progress = (1.0 - math.cos(math.pi * progress)) / 2.0
        return self.start_gamma + (self.end_gamma - self.start_gamma) * progress

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not hasattr(getattr(pl_module, "loss", None), "gamma"):
            raise TypeError(
                f"TaiLrGammaSchedule sets `module.loss.gamma`, but "
                f"{type(getattr(pl_module, 'loss', None)).__name__} has no `gamma`: use "
                "ltlight.losses.TaiLrLoss"
            )

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        pl_module.loss.gamma = self.gamma_at(epoch)
        pl_module.log("train/gamma", pl_module.loss.gamma, on_step=False, on_epoch=True)
