"""DRW — deferred re-weighting (Cao et al., "Learning Imbalanced Datasets with Label-Distribution-
Aware Margin Loss", NeurIPS 2019, Algorithm 1).

Before ``start_epoch`` (the paper's ``T0``) the loss is unweighted; from it on, every sample is
weighted by its class weight ``w_y`` and each SGD step is re-normalised by the batch's weight sum,
``θ ← θ − α (Σ_B w_y)^{-1} ∇ Σ_B w_y ℓ_i``. That re-normalisation is exactly the weighted-mean
reduction every :class:`~ltlight.losses.LongTailLoss` already applies, so this callback only sets
``module.loss.weight`` and works with any loss that has a ``weight`` attribute.
"""

import lightning as L
import torch

from ltlight.callbacks.epoch_switches.base import EpochSwitch
from ltlight.checks import check_choice, check_range
from ltlight.epochs import Epoch, check_epoch
from ltlight.losses import effective_number, inverse_frequency

WEIGHTS = ("effective_number", "inverse_frequency")


class DeferredReweighting(EpochSwitch):
    """Switch the loss to class re-weighting at ``start_epoch``.

    Args:
        start_epoch: first epoch (counting from 0) trained with weights, ``>= 0``, or a fraction
            of ``trainer.max_epochs`` in [0, 1]; the paper uses 160 of 200, i.e. 0.8. It must lie
            before the end of training.
        weights: ``"effective_number"`` — ``(1−β)/(1−β^{n_j})`` (Cui et al., CVPR 2019; what the
            official code uses) — or ``"inverse_frequency"`` — ``1/n_j``.
        beta: β of the effective number, in ``(0, 1)``.

    Before ``start_epoch`` the loss keeps the weight it was built with (usually none).
    """

    epoch_arguments = ("start_epoch",)

    def __init__(
        self, start_epoch: Epoch = 0.8, weights: str = "effective_number", beta: float = 0.9999
    ) -> None:
        check_epoch("start_epoch", start_epoch)
        check_choice("weights", weights, WEIGHTS)
        check_range("beta", beta, 0.0, 1.0, low_open=True, high_open=True)
        self.start_epoch = start_epoch
        self.weights = weights
        self.beta = beta
        self._initial_weight: torch.Tensor | None = None
        self._class_weight: torch.Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        loss = getattr(pl_module, "loss", None)
        if loss is None or not hasattr(loss, "weight"):
            raise TypeError(
                "DeferredReweighting sets `module.loss.weight`, but "
                f"{type(loss).__name__} has no `weight` attribute: subclass "
                "ltlight.losses.LongTailLoss or add a per-class `weight`"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's setup, which hands the datamodule's counts to the module and loss.
        loss = pl_module.loss
        counts = getattr(pl_module, "class_counts", None)
        if counts is None:
            counts = getattr(loss, "class_counts", None)
        if counts is None:
            raise ValueError(
                "DeferredReweighting needs the training class counts: use a datamodule with a "
                "`class_counts` attribute (or give the loss `class_counts`)"
            )
        self._initial_weight = loss.weight
        if self.weights == "effective_number":
            self._class_weight = effective_number(counts, beta=self.beta)
        else:
            self._class_weight = inverse_frequency(counts)

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        active = epoch >= self.epochs["start_epoch"]
        pl_module.loss.weight = self._class_weight if active else self._initial_weight
        pl_module.log("train/reweighting", float(active), on_step=False, on_epoch=True)
