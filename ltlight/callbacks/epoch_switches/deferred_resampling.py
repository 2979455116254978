"""DRS — deferred re-sampling (Cao et al., NeurIPS 2019, Section 3.3): instance sampling before
``start_epoch``, class-balanced sampling (every class equally likely) from it on — or DB-loss's
class-aware sampling, for multi-label data (:class:`~ltlight.data.sampling.EpochSampler`).
"""

import lightning as L

from ltlight.callbacks.epoch_switches.base import EpochSwitch, class_balanced_sampler
from ltlight.checks import check_choice
from ltlight.epochs import Epoch, check_epoch

#: What deferred re-sampling switches to (the sampler's re-sampling modes).
RESAMPLING_MODES = ("class_balanced", "class_aware")


class DeferredResampling(EpochSwitch):
    """Switch the training loader's sampler to class-balanced (or class-aware) sampling at
    ``start_epoch``.

    Works with ltlight's datamodules, whose training loader has a ``sampler.class_balanced`` flag
    (DDP-aware: every rank draws a disjoint shard of the balanced epoch).

    Args:
        start_epoch: first epoch (counting from 0) sampled class-balanced, ``>= 0``, or a
            fraction of ``trainer.max_epochs`` in [0, 1]; the paper: 160 of 200, i.e. 0.8. It
            must lie before the end of training.
        sampling: ``"class_balanced"`` (a class, then an image of it, with replacement) or
            ``"class_aware"`` (class cycles, three images per pick from per-class cycles).
    """

    epoch_arguments = ("start_epoch",)

    def __init__(self, start_epoch: Epoch = 0.8, sampling: str = "class_balanced") -> None:
        check_epoch("start_epoch", start_epoch)
        self.start_epoch = start_epoch
        self.sampling = check_choice("sampling", sampling, RESAMPLING_MODES)

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        sampler = class_balanced_sampler(trainer, "DeferredResampling")
        resampled = epoch >= self.epochs["start_epoch"]
        if self.sampling == "class_balanced" or not resampled:
            sampler.class_balanced = resampled
        else:
            sampler.sampling = self.sampling
        pl_module.log("train/class_balanced", float(sampler.class_balanced), on_epoch=True)
