"""A schedule for TaiLr's γ (Ji et al., "Tailoring Language Generation Models under Total
Variation Distance", ICLR 2023): γ rises from ``start_gamma`` to ``end_gamma`` between two epochs,
so training starts as cross-entropy (γ = 0) and ends closer to the total-variation loss.
"""

import math

import lightning as L

from ltlight.callbacks.epoch_switches.base import EpochSwitch
from ltlight.checks import check_choice, check_range
from ltlight.epochs import Epoch, check_epoch, resolve_epoch

MODES = ("linear", "cosine")


class TaiLrGammaSchedule(EpochSwitch):
    """Set ``module.loss.gamma`` once per epoch.

    With ``p = clamp((epoch − start_epoch) / (end_epoch − start_epoch), 0, 1)``:
    linear ``γ = γ_0 + (γ_1 − γ_0)·p``; cosine ``γ = γ_0 + (γ_1 − γ_0)·(1 − cos(π p))/2``.

    Args:
        start_gamma: γ up to ``start_epoch``, in ``[0, 1]``.
        end_gamma: γ from ``end_epoch`` on, in ``[0, 1]``.
        start_epoch: epoch where γ starts to move, ``>= 0``, or a fraction of
            ``trainer.max_epochs`` in [0, 1].
        end_epoch: epoch (or fraction) where γ reaches ``end_gamma``, ``>= start_epoch``; both
            must lie before the end of training.
        mode: ``"linear"`` or ``"cosine"``.
    """

    def __init__(
        self,
        start_gamma: float = 0.0,
        end_gamma: float = 0.5,
        start_epoch: Epoch = 0,
        end_epoch: Epoch = 0.9,
        mode: str = "linear",
    ) -> None:
        for name, value in (("start_gamma", start_gamma), ("end_gamma", end_gamma)):
            check_range(name, value, 0.0, 1.0)
        check_epoch("start_epoch", start_epoch)
        check_epoch("end_epoch", end_epoch, minimum=start_epoch, minimum_name="start_epoch")
        check_choice("mode", mode, MODES)
        self.start_gamma = start_gamma
        self.end_gamma = end_gamma
        self.start_epoch = start_epoch
        self.end_epoch = end_epoch
        self.mode = mode

    epoch_arguments = ("start_epoch", "end_epoch")

    def gamma_at(self, epoch: int, max_epochs: int | None = None) -> float:
        """γ used during ``epoch``; fractions are of ``max_epochs`` (default: the fit's)."""
        if max_epochs is not None or not hasattr(self, "epochs"):
            start = resolve_epoch("start_epoch", self.start_epoch, max_epochs)
            end = resolve_epoch("end_epoch", self.end_epoch, max_epochs)
        else:
            start, end = self.epochs["start_epoch"], self.epochs["end_epoch"]
        if end < start:
            raise ValueError(f"end_epoch ({end}) must be >= start_epoch ({start}) once resolved")
        span = end - start
        progress = 1.0 if span == 0 else (epoch - start) / span
        progress = min(max(progress, 0.0), 1.0)
        if self.mode == "cosine":
            progress = (1.0 - math.cos(math.pi * progress)) / 2.0
        return self.start_gamma + (self.end_gamma - self.start_gamma) * progress

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if not hasattr(getattr(pl_module, "loss", None), "gamma"):
            raise TypeError(
                f"TaiLrGammaSchedule sets `module.loss.gamma`, but "
                f"{type(getattr(pl_module, 'loss', None)).__name__} has no `gamma`: use "
                "ltlight.losses.TaiLrLoss"
            )

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        pl_module.loss.gamma = self.gamma_at(epoch)
        pl_module.log("train/gamma", pl_module.loss.gamma, on_step=False, on_epoch=True)
