"""The shared shape of ltlight's schedule callbacks: state applied as a function of the epoch."""

import numbers

import lightning as L


def check_epoch(name: str, value: int, minimum: int = 0, minimum_name: str | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer epoch ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer epoch, got {value!r}")
    if value < minimum:
        bound = f"{minimum_name} ({minimum})" if minimum_name else str(minimum)
        raise ValueError(f"{name} must be >= {bound}, got {value!r}")


class EpochScheduleCallback(L.Callback):
    """Calls :meth:`apply` at the start of every training epoch and when training (re)starts.

    Lightning skips ``on_train_epoch_start`` when it resumes from a mid-epoch checkpoint; applying
    the state again in ``on_train_start`` makes a resumed run see exactly what an uninterrupted one
    saw. The state is a pure function of ``trainer.current_epoch``, so nothing needs saving.
    """

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        raise NotImplementedError

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.apply(trainer, pl_module, trainer.current_epoch)
