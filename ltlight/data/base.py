"""One datamodule base for both pipelines: the shared arguments and a loader for every split.

The in-memory :class:`~ltlight.data.tensor.datamodule.LongTailDataModule` and the file
:class:`~ltlight.data.files.datamodule.FileLongTailDataModule` differ in how a split is held and
read; what a Trainer sees of them is the same and lives here:

* the arguments every dataset takes — ``batch_size``, ``eval_batch_size``, ``seed``, ``augment``,
  ``val_per_class`` — checked once, and ``save_hyperparameters`` recording them with every
  subclass's own (checkpoints record the data set-up; primitive arguments only);
* the loaders: training on the training split, shuffled (augmented with ``augment``); validation
  on the validation split or, when there is none, on the test split (:attr:`validates_on_test`:
  the papers' protocol, nothing may be selected on it); test and prediction on the test split;
  evaluation in batches of ``eval_batch_size``;
* each loader made on the trainer's device (``trainer.strategy.root_device``; the CPU without a
  trainer) for ``trainer.global_rank`` of ``trainer.world_size``, the training loader given
  Lightning's count of the epoch's processed batches, so that it resumes where Lightning does.

A subclass says which splits it has (:meth:`SplitDataModule.has_split`) and makes the loader of
a split (:meth:`SplitDataModule.make_loader`).
"""

from typing import ClassVar

import torch
from lightning.pytorch import LightningDataModule
from torch import nn

from ltlight._lightning_internals import processed_batches_in_epoch
from ltlight.checks import check_integer
from ltlight.data.sampling import ResumableEpochLoader
from ltlight.preprocessing import Preprocessing, input_channels, weights_name


class SplitDataModule(LightningDataModule):
    """Base of :class:`LongTailDataModule` and :class:`FileLongTailDataModule` (see the module doc).

    Args:
        batch_size: training images per batch (per rank), ≥ 1.
        eval_batch_size: evaluation images per batch (per rank), ≥ 1; ``None``: ``batch_size``.
        seed: in ``[0, 2**63)``; the data's randomness (subsets, order, augmentation) derives
            from it.
        augment: augment the training batches (how: per pipeline and dataset).
        val_per_class: ``k`` ≥ 0 images per class carved from the training split as a balanced
            validation split (``0``: none is carved).
    """

    #: Dataset name, for messages.
    name: ClassVar[str] = "dataset"
    #: Per-channel mean / std of the [0, 1] images, for normalisation.
    mean: ClassVar[tuple[float, ...]]
    std: ClassVar[tuple[float, ...]]
    #: Channels of the images (1: grey, 3: RGB).
    in_channels: ClassVar[int]

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None,
        seed: int,
        augment: bool,
        val_per_class: int,
    ) -> None:
        super().__init__()
        # Records the arguments of every subclass's __init__ too (primitive ones only).
        self.save_hyperparameters()
        self.batch_size = check_integer("batch_size", batch_size, 1)
        if eval_batch_size is not None:
            eval_batch_size = check_integer("eval_batch_size", eval_batch_size, 1)
        self.eval_batch_size = eval_batch_size
        self.seed = check_integer("seed", seed, 0, 2**63 - 1)
        self.augment = augment
        self.val_per_class = check_integer("val_per_class", val_per_class, 0)

    def has_split(self, split: str) -> bool:
        """Whether the dataset has a ``"train"``, ``"val"`` or ``"test"`` split."""
        raise NotImplementedError

    def make_loader(
        self, split: str, batch_size: int, device: torch.device, rank: int, world_size: int
    ) -> ResumableEpochLoader:
        """The loader of ``split`` for one rank; ``"train"``: shuffled, augmented if ``augment``."""
        raise NotImplementedError

    @property
    def validates_on_test(self) -> bool:
        """Whether the validation loader serves the test split (there is no validation split)."""
        return not self.has_split("val") and self.has_split("test")

    # -- preprocessing that follows the pretrained weights -----------------------------------
    def follow_weights(self, backbone: nn.Module) -> Preprocessing | None:
        """Use ``backbone``'s pretrained preprocessing (per pipeline); ``None``: nothing changes."""
        return None

    def follow_the_modules_weights(self) -> None:
        """:meth:`follow_weights` of the trainer's module (``module.backbone``): called by
        ``setup``, the hook Lightning calls first on every rank and stage, before any loader."""
        module = getattr(self.trainer, "lightning_module", None)
        if module is not None:
            self.follow_weights(getattr(module, "backbone", module))

    def check_channels(self, weights: Preprocessing, backbone: nn.Module) -> None:
        """A ``ValueError`` when the backbone takes another number of channels than the data
        has: its first convolution's (also when timm adapted it, ``in_chans=1``), else the
        weights' mean / std's."""
        channels = input_channels(backbone) or len(weights.mean)
        if channels != self.in_channels:
            raise ValueError(
                f"{weights_name(backbone)} takes {channels}-channel images; {self.name} has "
                f"{self.in_channels}"
            )

    # -- LightningDataModule hooks ----------------------------------------------------------
    def train_dataloader(self) -> ResumableEpochLoader:
        return self._loader("train", self.batch_size)

    def val_dataloader(self) -> ResumableEpochLoader:
        return self._loader("test" if self.validates_on_test else "val", self._eval_batch_size)

    def test_dataloader(self) -> ResumableEpochLoader:
        return self._loader("test", self._eval_batch_size)

    def predict_dataloader(self) -> ResumableEpochLoader:
        return self._loader("test", self._eval_batch_size)

    # -- helpers ----------------------------------------------------------------------------
    @property
    def _eval_batch_size(self) -> int:
        return self.eval_batch_size or self.batch_size

    def _loader(self, split: str, batch_size: int) -> ResumableEpochLoader:
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        rank, world_size = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        loader = self.make_loader(split, batch_size, device, rank, world_size)
        if split == "train" and trainer is not None:
            # Where Lightning resumes: the batches of this epoch whose optimiser step is done.
            loader.progress = lambda: processed_batches_in_epoch(trainer)
        return loader
