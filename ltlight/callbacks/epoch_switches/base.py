"""What the epoch switches share: state applied as a function of the epoch, and the training
loader's class-balanced flag that re-sampling switches.

Epoch arguments are epochs or fractions of the run (:mod:`ltlight.epochs`).
"""

from typing import Any

import lightning as L
from typing_extensions import override

from ltlight.epochs import check_before_end, resolve_epoch


class EpochSwitch(L.Callback):
    """Calls :meth:`apply` at the start of every training epoch and when training (re)starts.

    Lightning skips ``on_train_epoch_start`` when it resumes from a mid-epoch checkpoint; applying
    the state again in ``on_train_start`` makes a resumed run see exactly what an uninterrupted one
    saw. The state is a pure function of ``trainer.current_epoch``, so nothing needs saving.

    Subclasses name their epoch arguments in ``epoch_arguments``; at ``setup("fit")`` each is
    resolved against ``trainer.max_epochs`` into :attr:`epochs` (``name → epoch``), and one at or
    after the end of training stops the run with an error naming both numbers.
    """

    #: Constructor arguments that are epochs or fractions of the run.
    epoch_arguments: tuple[str, ...] = ()

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        max_epochs = trainer.max_epochs
        self.epochs: dict[str, int] = {}
        for name in self.epoch_arguments:
            value = getattr(self, name)
            epoch = resolve_epoch(name, value, max_epochs)
            check_before_end(type(self).__name__, name, value, epoch, max_epochs)
            self.epochs[name] = epoch

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        raise NotImplementedError

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)

    @override
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)


def class_balanced_sampler(trainer: L.Trainer, who: str) -> Any:
    """The training loader's sampler, whose ``class_balanced`` flag makes each following epoch a
    class-balanced draw (ltlight's loaders have one); a ``TypeError`` naming ``who`` otherwise."""
    loader = trainer.train_dataloader
    sampler = getattr(loader, "sampler", None)
    if not hasattr(sampler, "class_balanced"):
        raise TypeError(
            f"{who} samples class-balanced through the training loader's `sampler.class_balanced` "
            f"flag (ltlight's datamodules have one); got {type(loader).__name__}"
        )
    return sampler
