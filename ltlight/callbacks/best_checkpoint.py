"""BestCheckpoint: the epoch with the lowest validation balanced error, never chosen on test."""

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class BestCheckpoint(ModelCheckpoint):
    """Keep the epoch with the lowest ``val/balanced_error`` as ``checkpoints/best.ckpt`` — when
    validation is a split of its own.

    Selecting a checkpoint on the test split is not allowed: the test split is touched once, at
    the end, or its error is no longer a test error. When the datamodule's validation loader
    serves the test split (``datamodule.validates_on_test``: ltlight's datamodules with
    ``val_per_class=0``, the papers' protocol) this callback saves nothing, and the run's model
    is its last epoch (``last.ckpt``). A datamodule without ``validates_on_test`` is taken at its
    word. So every dataset's config can hold one: runs of the papers' protocol still write only
    ``last.ckpt``, runs with a validation split also ``best.ckpt``.

    Args:
        monitor: the metric to select on.
        mode: ``"min"`` (an error) or ``"max"``.
        filename: the checkpoint's name, without ``.ckpt``.
        enable_version_counter: ``False``: a later best epoch replaces the file.
        **kwargs: the other arguments of
            :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (``dirpath``: ``ltlight`` sets
            the run's ``checkpoints/`` folder).

    Example:
        >>> BestCheckpoint().monitor
        'val/balanced_error'
    """

    def __init__(
        self,
        monitor: str = "val/balanced_error",
        mode: str = "min",
        filename: str = "best",
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            monitor=monitor,
            mode=mode,
            filename=filename,
            enable_version_counter=enable_version_counter,
            **kwargs,
        )
        #: Whether validation is the test split in the current run (then nothing is saved).
        self.validates_on_test = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        datamodule = getattr(trainer, "datamodule", None)
        self.validates_on_test = bool(getattr(datamodule, "validates_on_test", False))

    # Every hook in which ModelCheckpoint saves: nothing when validation is the test split.
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if not self.validates_on_test:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.validates_on_test:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.validates_on_test:
            super().on_validation_end(trainer, pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not self.validates_on_test:
            super().on_exception(trainer, pl_module, exception)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.validates_on_test:
            super().on_train_end(trainer, pl_module)
