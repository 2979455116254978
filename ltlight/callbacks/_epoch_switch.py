"""The shared shape of ltlight's schedule callbacks: state applied as a function of the epoch.

Epoch arguments are epochs or fractions of the run (:mod:`ltlight.schedule`).
"""

import lightning as L

from ltlight.schedule import Epoch, check_before_end, check_epoch, resolve_epoch

__all__ = ["Epoch", "EpochScheduleCallback", "check_epoch", "resolve_epoch"]


class EpochScheduleCallback(L.Callback):
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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)
