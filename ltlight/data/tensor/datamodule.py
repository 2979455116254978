"""What every in-memory datamodule shares; a dataset file only says how to load its arrays.

A subclass sets the dataset's constants (``num_classes``, ``in_channels``, ``image_size``,
``max_count`` — images per class of the balanced training set —, ``mean``/``std`` and the
augmentation) and implements :meth:`LongTailDataModule.load_split`, which returns a split as a
uint8 ``(N, C, H, W)`` tensor and int64 labels on the CPU. This class then

* computes ``class_counts`` from the profile at construction — before ``setup`` and identically on
  every DDP rank, so losses and callbacks can use them at once;
* with ``val_per_class = k > 0``, carves ``k`` images of every class (seeded,
  :func:`~ltlight.data.profiles.validation_indices`) from the balanced training pool *before* the
  long-tailed subset is drawn: a balanced validation split disjoint from train and test, on which
  checkpoints are selected and post-hoc calibration is fitted. The head class then keeps
  ``min(n_max, pool − k)`` images (every class: ``min(n_c, max_count − k)``). With ``k = 0``
  (the papers' protocol) the balanced test split also serves as validation: select nothing;
* keeps the seeded long-tailed subset of the rest of the training split
  (:func:`long_tail_indices`) and the whole balanced test split (test and prediction set);
* makes a :class:`~ltlight.data.tensor.loader.DeviceDataLoader` of a split, copied once to the
  device the loaders of :class:`~ltlight.data.base.SplitDataModule` are made on.

**Preprocessing follows pretrained weights** (LIFT fine-tunes CLIP on CIFAR-100-LT at 224): a
backbone that carries pretrained weights (``timm_backbone`` with ``pretrained`` or
``checkpoint_path``; any module given a ``pretrained_cfg``) decides mean / std, input size,
evaluation resize and interpolation, read by ``setup`` from the trainer's module. Training
batches are augmented at the dataset's size, then resized to the weights' size; evaluation
batches are resized (shorter side to ``floor(size / crop_pct)``) and centre-cropped, as
:class:`~ltlight.preprocessing.Preprocessing` does for ``predict_images``. A timm model made
without weights keeps the dataset's own preprocessing.
"""

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor, nn

from ltlight.data.base import SplitDataModule
from ltlight.data.profiles import long_tail_counts, long_tail_indices, validation_indices
from ltlight.data.tensor.loader import DeviceDataLoader
from ltlight.preprocessing import Preprocessing


class LongTailDataModule(SplitDataModule):
    """Base of the in-memory long-tailed datamodules (see the module doc).

    Args:
        imbalance_ratio: ``ρ = n_max / n_min`` ≥ 1 of the training split.
        profile: ``"exp"`` or ``"step"`` (see :func:`~ltlight.data.long_tail_counts`).
        step_fraction: for ``"step"``, the fraction of head classes, in (0, 1).
        batch_size: training images per batch (per rank), ≥ 1.
        eval_batch_size: evaluation images per batch (per rank), ≥ 1; ``None``: ``batch_size``.
        seed: the long-tailed subset, the epoch order and the augmentation all derive from it.
        augment: random crop / flip of the training batches (per dataset, see its class).
        val_per_class: ``k`` ≥ 0 images per class carved from the balanced training pool as the
            validation split (seeded by ``seed``, disjoint from train and test); ``0``: the test
            split is also the validation split (the papers' protocol: no model selection).
    """

    num_classes: ClassVar[int]
    in_channels: ClassVar[int]
    image_size: ClassVar[int]
    #: Zero padding of the random crop (``None``: no crop) and whether to flip, when augmenting.
    crop_padding: ClassVar[int | None] = 4
    flip: ClassVar[bool] = True
    #: Names of the classes (tables, charts, W&B panels, error messages); ``None``: indices.
    class_names: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        imbalance_ratio: float = 100.0,
        profile: str = "exp",
        step_fraction: float = 0.5,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        seed: int = 0,
        augment: bool = True,
        val_per_class: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, augment, val_per_class)
        if self.val_per_class >= self.max_count:
            raise ValueError(
                f"val_per_class must be an integer in [0, {self.max_count}) ({self.name} has "
                f"{self.max_count} training images per class, one must stay for training), "
                f"got {val_per_class!r}"
            )
        self.imbalance_ratio = imbalance_ratio
        self.profile = profile
        self.step_fraction = step_fraction
        #: Training images per class of the whole long-tailed training set (head class first);
        #: with a validation split no class keeps more than ``max_count − val_per_class``.
        self.class_counts: list[int] = [
            min(n, self.max_count - self.val_per_class)
            for n in long_tail_counts(
                self.max_count, self.num_classes, imbalance_ratio, profile, step_fraction
            )
        ]
        #: ``(images, labels)`` on the CPU once :meth:`setup` has run.
        self.train_data: tuple[Tensor, Tensor] | None = None
        self.val_data: tuple[Tensor, Tensor] | None = None
        self.test_data: tuple[Tensor, Tensor] | None = None
        self._on_device: dict[tuple[str, torch.device], tuple[Tensor, Tensor]] = {}
        #: The pretrained weights' preprocessing once :meth:`follow_weights` found some.
        self.weights_preprocessing: Preprocessing | None = None
        #: Evaluation resize (shorter side) before the centre crop, when following weights.
        self.resize: int | None = None
        self.interpolation = "bilinear"

    @property
    def max_count(self) -> int:
        """Images per class in the balanced training split: the head class's count ``n_max``."""
        raise NotImplementedError

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        """The balanced training (``train=True``) or test split: uint8 ``(N, C, H, W)``, int64."""
        raise NotImplementedError

    def follow_weights(self, backbone: nn.Module) -> Preprocessing | None:
        """Use the preprocessing of ``backbone``'s pretrained weights (see the module doc).

        Returns it, or ``None`` (nothing changes) for a backbone without pretrained weights.

        The weights' mean / std apply when they are per channel of this data; a model made for
        the data's channels from weights of others (timm's ``in_chans=1`` from RGB weights)
        keeps the dataset's own.

        Raises:
            ValueError: the backbone takes another number of channels than the dataset has.
        """
        if not carries_pretrained_weights(backbone):
            return None
        weights = Preprocessing.from_backbone(backbone)
        if weights is None:
            return None
        self.check_channels(weights, backbone)
        if len(weights.mean) == self.in_channels:  # else: a model made for this data's channels
            self.mean, self.std = weights.mean, weights.std  # from others' (timm's in_chans)
        self.image_size, self.resize = weights.image_size, weights.resize
        self.interpolation = weights.interpolation
        self.weights_preprocessing = weights
        return weights

    # -- LightningDataModule hooks ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.follow_the_modules_weights()
        if self.train_data is None and (stage in (None, "fit") or self.val_per_class > 0):
            images, labels = self._load_checked(train=True)
            pool, val = validation_indices(
                labels, self.val_per_class, seed=self.seed, class_names=self._names_for_errors()
            )
            self.val_data = (images[val], labels[val])
            keep = pool[long_tail_indices(labels[pool], self.class_counts, seed=self.seed)]
            self.train_data = (images[keep], labels[keep])
            counts = torch.bincount(self.train_data[1], minlength=self.num_classes).tolist()
            if counts != self.class_counts:
                raise RuntimeError(
                    f"{self.name}: the long-tailed subset has {counts} images per class, "
                    f"expected {self.class_counts}"
                )
        if self.test_data is None:
            self.test_data = self._load_checked(train=False)

    def _names_for_errors(self) -> list[str]:
        if self.class_names is not None and len(self.class_names) == self.num_classes:
            return list(self.class_names)
        return [str(c) for c in range(self.num_classes)]

    def has_split(self, split: str) -> bool:
        return split != "val" or self.val_per_class > 0

    def _load_checked(self, train: bool) -> tuple[Tensor, Tensor]:
        """:meth:`load_split`, its labels checked once here rather than in every step: a label
        outside ``[0, num_classes)`` would fail deep in the loss (on a GPU: a device-side assert).
        """
        images, labels = self.load_split(train=train)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"{self.name}: the {'training' if train else 'test'} split has labels in "
                f"[{int(labels.min())}, {int(labels.max())}], outside the classes "
                f"[0, {self.num_classes}) of num_classes={self.num_classes}"
            )
        return images, labels

    def teardown(self, stage: str | None = None) -> None:
        self._on_device.clear()  # release the device copies; the CPU arrays stay for reuse

    def make_loader(
        self, split: str, batch_size: int, device: torch.device, rank: int, world_size: int
    ) -> DeviceDataLoader:
        images, labels = self._split_on(split, device)
        train = split == "train"
        augment = train and self.augment
        resize = None  # the dataset's size, unless pretrained weights want another
        if self.weights_preprocessing is not None:
            resize = Preprocessing.from_datamodule(self)
            if train:  # augmented at the dataset's size, then resized whole
                resize = dataclasses.replace(resize, resize=None)
        return DeviceDataLoader(
            images,
            labels,
            batch_size,
            mean=self.mean,
            std=self.std,
            shuffle=train,
            crop_padding=self.crop_padding if augment else None,
            flip=self.flip and augment,
            preprocessing=resize,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            device=device,
        )

    # -- helpers ----------------------------------------------------------------------------
    def _split_on(self, split: str, device: torch.device) -> tuple[Tensor, Tensor]:
        """The split on ``device``, copied there once and reused by every loader."""
        data = {"train": self.train_data, "val": self.val_data, "test": self.test_data}[split]
        if data is None:
            self.setup("fit" if split == "train" else "validate")
            data = {"train": self.train_data, "val": self.val_data, "test": self.test_data}[split]
        assert data is not None
        key = (split, device)
        if key not in self._on_device:
            self._on_device[key] = (data[0].to(device), data[1].to(device))
        return self._on_device[key]


def carries_pretrained_weights(backbone: nn.Module) -> bool:
    """Whether ``backbone`` holds pretrained weights whose preprocessing the data should follow:
    :func:`~ltlight.models.timm_backbone` loaded some (``ltlight_base_weights``), or a module
    other than a timm model has a ``pretrained_cfg`` (given with torchvision's weights). Every
    timm model has a ``pretrained_cfg``, random or not."""
    if getattr(backbone, "ltlight_base_weights", None) is not None:
        return True
    is_timm = type(backbone).__module__.startswith("timm.")
    return bool(getattr(backbone, "pretrained_cfg", None)) and not is_timm
