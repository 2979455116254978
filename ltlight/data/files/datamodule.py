"""What every datamodule of image files shares; a dataset file only says how to read its lists.

A subclass implements :meth:`FileLongTailDataModule.read_lists`, which returns the training,
validation and test :class:`~ltlight.data.files.image_list.ImageList` (validation and test may be
``None``) and the class names. This class then

* checks them: labels in ``[0, C)``, no class without a training image, every file present (or
  dropped with a warning naming them, ``skip_bad_images``), the same file in training and a
  given validation or test list (a warning; a carved validation split never shares one);
* carves a seeded balanced validation split of ``val_per_class`` images per class from the
  training split when there is no validation list
  (:func:`~ltlight.data.profiles.validation_indices`), *then* draws an optional long-tailed
  subset (``imbalance_ratio``, ``profile``, ``seed``; for a balanced dataset of your own);
* computes ``class_counts`` from the training split as it is then — identical on every DDP rank,
  and available before ``setup`` (reading the lists on first use);
* makes a :class:`~ltlight.data.files.loader.FileDataLoader` of a split, on the device and for
  the rank :class:`~ltlight.data.base.SplitDataModule` says.

Without a validation list and with ``val_per_class = 0``, the test split serves as validation
(the papers' protocol: no model selection, report the last epoch).

**Preprocessing follows the weights.** A pretrained backbone (one with timm's ``pretrained_cfg``)
decides the mean / std, the input size, the evaluation resize (``floor(size / crop_pct)``) and
the interpolation: :meth:`FileLongTailDataModule.setup` reads them from the trainer's module
(``module.backbone``, :meth:`~ltlight.preprocessing.Preprocessing.from_backbone`) and the
loaders use them. ``setup`` is the hook Lightning calls first (before the callbacks' and the
module's ``setup``, long before any loader is built), on every rank and for every stage, and the
module's ``setup`` then records the result in its checkpoints
(:class:`~ltlight.preprocessing.Preprocessing`). ``image_size``, ``resize`` and
``interpolation`` left unset follow the weights (224, 256, bilinear without pretrained weights);
a value typed that differs is an error naming both. Without a trainer, call
:meth:`FileLongTailDataModule.follow_weights` yourself.

Multi-label data (:mod:`ltlight.data.files.multilabel`: ``labels`` float ``(N, C)``, NaN for
uncertain) takes the same path with :attr:`FileLongTailDataModule.multi_label` true: every class
needs a positive training image, ``class_counts`` are positives per class (head / medium / tail
printed at set-up), and validation is carved per image (``val_fraction``; whole groups, e.g.
patients, when the list has them), never from the test split.
"""

import os
import warnings
from typing import ClassVar

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from ltlight.checks import check_choice, check_integer, check_range
from ltlight.data.base import SplitDataModule
from ltlight.data.files.dali import require_dali
from ltlight.data.files.dataset import ImageFileDataset, missing_files
from ltlight.data.files.image_list import ImageList, check_labels, read_new_images
from ltlight.data.files.loader import DECODERS, FileDataLoader
from ltlight.data.files.multilabel import check_positives, group_summary, positives_per_class
from ltlight.data.profiles import (
    check_imbalance_ratio,
    check_profile,
    long_tail_counts,
    long_tail_indices,
    validation_fraction_indices,
    validation_indices,
)
from ltlight.data.sampling import SAMPLING_MODES
from ltlight.preprocessing import INTERPOLATIONS, Preprocessing, weights_name

#: ImageNet's per-channel mean / std of [0, 1] images, used by every ImageNet-LT, Places-LT and
#: iNaturalist recipe.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FileLongTailDataModule(SplitDataModule):
    """Base class of the datamodules whose images are files.

    Args:
        batch_size: training images per batch and rank, ≥ 1.
        eval_batch_size: evaluation images per batch and rank; ``None``: ``batch_size``.
        num_workers: decoding processes per loader (persistent), ≥ 0.
        seed: the validation carve, the long-tailed subset, the order and the augmentation.
        augment: random resized crop, flip and colour jitter of the training images; otherwise
            the evaluation transform.
        color_jitter: strength of the brightness / contrast / saturation jitter (0.4 as in
            Kang et al., ICLR 2020; 0 for none).
        val_per_class: without a validation list, images per class carved from training, ≥ 0.
        val_fraction: without a validation list, the fraction of the training images carved per
            image (seeded), in [0, 1); what multi-label data uses instead of ``val_per_class``.
        cap_val_per_class: carve at most half the rarest class's images per class,
            ``min(val_per_class, ⌊n_min / 2⌋)``, saying so when it caps: ``val_per_class: 20``
            then works on any long-tailed set whose rarest class has 2 images or more.
        imbalance_ratio: make the training split long-tailed with ``ρ = n_max / n_min`` (head
            class = class 0, ``n_max`` = the smallest class's size); ``None`` keeps it as read.
        profile: ``"exp"`` or ``"step"``, with ``imbalance_ratio``.
        step_fraction: for ``"step"``, the fraction of head classes, in (0, 1).
        image_size: side of the crops; ``None``: the pretrained backbone's input size, else 224
            (the recipes').
        resize: the evaluation resize of the shorter side before the centre crop; ``None``: the
            pretrained backbone's ``floor(image_size / crop_pct)``, else 256.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``; ``None``: the pretrained
            backbone's (CLIP: bicubic), else bilinear.
        five_crop: test-time ensembling in validation, test and prediction: resize the shorter
            side to ``image_size + 24`` and take five crops (torchvision's ``FiveCrop``, as
            LIFT); the module averages their logits. Off by default.
        check_files: look up every file at set-up (one ``stat`` each); a missing file then fails
            at once, naming it, instead of in the middle of an epoch.
        skip_bad_images: drop missing files at set-up, and images that do not decode when they
            are loaded, with a warning naming them, instead of raising.
        decode_on_device: decode JPEGs batch-wise on the training device (nvJPEG on a GPU);
            workers then only read files. With ``decoder="dali"``: DALI's ``mixed`` decoding.
        decoder: ``"pil"`` (Pillow in worker processes) or ``"dali"`` (NVIDIA DALI decodes only
            each crop's region, in ``num_workers`` threads; ``pip install 'ltlight[dali]'``):
            the same crop boxes, flips and jitter, from the same per-sample generators.
        sampling: the training order: ``"instance"`` (a shuffle), ``"class_balanced"`` or
            ``"class_aware"`` (DB-loss's sampler; :class:`~ltlight.data.sampling.EpochSampler`).
        predict: new images for ``ltlight predict`` instead of the test split: a folder (every
            image below it, recursively; no class folders needed), a CSV with a ``path``
            column (paths relative to its folder; a ``label`` column is optional) or one image
            file. Labels unknown; classes and preprocessing are the training run's.
    """

    name: ClassVar[str] = "image files"
    in_channels: ClassVar[int] = 3
    mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    std: ClassVar[tuple[float, ...]] = IMAGENET_STD

    def __init__(
        self,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        seed: int = 0,
        augment: bool = True,
        color_jitter: float = 0.4,
        val_per_class: int = 0,
        cap_val_per_class: bool = False,
        imbalance_ratio: float | None = None,
        profile: str = "exp",
        step_fraction: float = 0.5,
        image_size: int | None = None,
        resize: int | None = None,
        check_files: bool = True,
        skip_bad_images: bool = False,
        decode_on_device: bool = False,
        decoder: str = "pil",
        interpolation: str | None = None,
        five_crop: bool = False,
        val_fraction: float = 0.0,
        sampling: str = "instance",
        predict: str | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, augment, val_per_class)
        self.val_fraction = check_range("val_fraction", val_fraction, 0, 1, high_open=True)
        self.sampling = check_choice("sampling", sampling, SAMPLING_MODES)
        self.num_workers = check_integer("num_workers", num_workers, 0)
        self.color_jitter = check_range("color_jitter", color_jitter, 0)
        self.cap_val_per_class = cap_val_per_class
        if imbalance_ratio is not None:
            check_imbalance_ratio(imbalance_ratio)
        check_profile(profile, step_fraction)
        self.imbalance_ratio = imbalance_ratio
        self.profile = profile
        self.step_fraction = step_fraction
        check_integer("image_size", image_size, 1, optional=True)
        check_integer("resize", resize, 1, optional=True)
        if interpolation is not None:
            check_choice("interpolation", interpolation, INTERPOLATIONS)
        #: What the user typed (``None``: not typed); the pretrained weights fill in the rest.
        self.given_preprocessing = {
            "image_size": image_size,
            "resize": resize,
            "interpolation": interpolation,
        }
        self.image_size = image_size or 224
        self.resize = resize or max(256, self.image_size)
        self.interpolation = interpolation or "bilinear"
        if image_size is not None:  # else the weights may still choose a smaller size
            self._check_resize()
        self.five_crop = five_crop
        self.check_files = check_files
        self.skip_bad_images = skip_bad_images
        self.decode_on_device = decode_on_device
        self.decoder = check_choice("decoder", decoder, DECODERS)
        if decoder == "dali":
            require_dali()  # a missing extra fails here, at configuration, in one line
        self.predict_source = predict
        #: The classes of the checkpoint this data serves (:meth:`follow_class_names`).
        self.checkpoint_class_names: list[str] | None = None
        self._lists: dict[str, ImageList | None] | None = None
        self._class_names: list[str] = []

    def _check_resize(self) -> None:
        if self.resize < self.image_size:
            raise ValueError(f"resize ({self.resize}) must be >= image_size ({self.image_size})")

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        """``(train, val, test, class_names)`` as stored; ``val`` / ``test`` may be ``None``.

        With :attr:`checkpoint_class_names` set, a dataset whose classes are names (folders,
        CSV names) indexes them by those names."""
        raise NotImplementedError

    # -- the classes of a checkpoint --------------------------------------------------------
    def follow_class_names(self, class_names: list[str]) -> None:
        """Index the classes as a trained checkpoint does: labels follow ``class_names`` (a
        class folder renamed or added since, which would shift every index after it, is an error
        naming it instead). ``ltlight validate|test|predict|fit --ckpt_path`` calls it with the
        checkpoint's class names before the data is read."""
        self.checkpoint_class_names = [str(name) for name in class_names]
        self._lists = None

    def state_dict(self) -> dict[str, list[str]]:
        """The class names, saved in checkpoints (:meth:`load_state_dict` compares them)."""
        return {"class_names": list(self.class_names)}

    def load_state_dict(self, state_dict: dict[str, list[str]]) -> None:
        """Refuse a checkpoint trained on other classes than this data's (in Python: call
        :meth:`follow_class_names` with the checkpoint's names before ``trainer.test``)."""
        names = state_dict.get("class_names")
        if names is not None:
            _check_same_classes(list(names), self.class_names, "the checkpoint")

    # -- the splits, read once on first use --------------------------------------------------
    @property
    def splits(self) -> dict[str, ImageList | None]:
        """``{"train", "val", "test", "predict"}`` image lists after the checks, the carve and
        the profile (``"predict"``: the new images of ``predict``, or ``None``)."""
        if self._lists is None:
            self._lists = self._prepare_lists()
        return self._lists

    @property
    def class_names(self) -> list[str]:
        self.splits  # noqa: B018 - reads the lists
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multi_label(self) -> bool:
        """Whether each image has a set of classes (float ``(N, C)`` targets, NaN uncertain)."""
        train = self.splits["train"]
        assert train is not None
        return train.multi_label

    @property
    def class_counts(self) -> list[int]:
        """Training images per class of the whole training split (as read, carved, profiled);
        for multi-label data the images in which the class is present."""
        train = self.splits["train"]
        assert train is not None
        if train.multi_label:
            return positives_per_class(train.labels).tolist()
        return torch.bincount(train.labels, minlength=self.num_classes).tolist()

    @property
    def num_train_samples(self) -> int:
        """Images in the training split as it is then (``N`` of the DB loss's prior ``n_c / N``)."""
        train = self.splits["train"]
        assert train is not None
        return len(train)

    def has_split(self, split: str) -> bool:
        """Whether ``split`` exists after the checks and the carve (``"val"``: a list or k > 0)."""
        return self.splits[split] is not None

    def _prepare_lists(self) -> dict[str, ImageList | None]:
        train, val, test, class_names = self.read_lists()
        if self.checkpoint_class_names is not None:
            _check_same_classes(self.checkpoint_class_names, class_names, "the checkpoint")
        self._class_names = list(class_names)
        num_classes = len(class_names)
        if num_classes < 2:
            raise ValueError(f"{train.source}: {num_classes} class(es); at least 2 are needed")
        for split in (train, val, test):
            if split is not None:
                self._check_targets(split, train.multi_label, num_classes)
        train, val, test = (self._present(s) if s is not None else None for s in (train, val, test))
        self._check_training_classes(train, class_names)
        for name, split in (("validation", val), ("test", test)):
            if split is not None:
                self._warn_shared_files(train, split, name)
        if val is None and self.val_per_class > 0:
            if train.multi_label:
                raise ValueError(
                    f"{train.source}: val_per_class = {self.val_per_class} needs one class per "
                    "image; multi-label data carves its validation per image: set val_fraction"
                )
            counts = torch.bincount(train.labels, minlength=num_classes)
            per_class = self._capped_val_per_class(counts, class_names)
            try:
                keep, carved = validation_indices(
                    train.labels, per_class, seed=self.seed, class_names=class_names
                )
            except ValueError as error:
                raise ValueError(f"{error}{_rows_of_small_class(train, per_class)}") from None
            train, val = train.subset(keep), train.subset(carved)
        elif val is None and self.val_fraction > 0:
            keep, carved = validation_fraction_indices(
                len(train), self.val_fraction, seed=self.seed, groups=train.groups
            )
            train, val = train.subset(keep), train.subset(carved)
            self._check_training_classes(train, class_names, " after carving val_fraction")
        if self.imbalance_ratio is not None:
            if train.multi_label:
                raise ValueError(
                    f"{train.source}: imbalance_ratio draws images per class; multi-label data "
                    "keeps its natural imbalance (imbalance_ratio must be None)"
                )
            pool = torch.bincount(train.labels, minlength=num_classes)
            target = long_tail_counts(
                int(pool.min()), num_classes, self.imbalance_ratio, self.profile, self.step_fraction
            )
            train = train.subset(long_tail_indices(train.labels, target, seed=self.seed))
        if train.multi_label:
            counts = positives_per_class(train.labels).tolist()
            rank_zero_info(
                f"{self.name}: {num_classes} classes, {len(train)} training images, "
                f"positives per class {max(counts)} to {min(counts)}; {group_summary(counts)}"
            )
        predict = None
        if self.predict_source is not None:
            predict = self._present(read_new_images(self.predict_source, class_names))
        return {"train": train, "val": val, "test": test, "predict": predict}

    @staticmethod
    def _check_targets(images: ImageList, multi_label: bool, num_classes: int) -> None:
        if images.multi_label != multi_label:
            kind = "multi-label" if multi_label else "single-label"
            raise ValueError(f"{images.source}: the training split is {kind}, this split is not")
        if not multi_label:
            check_labels(images.labels, num_classes, images)
        elif images.labels.shape[1] != num_classes:
            raise ValueError(
                f"{images.source}: {images.labels.shape[1]} classes, the training split has "
                f"{num_classes}"
            )

    @staticmethod
    def _check_training_classes(train: ImageList, class_names: list[str], when: str = "") -> None:
        if train.multi_label:
            check_positives(train.labels, class_names, train.source + when)
            return
        counts = torch.bincount(train.labels, minlength=len(class_names))
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"{train.source}{when}: class {class_names[empty[0]]!r} ({empty[0]}) has no "
                f"training image ({len(empty)} class(es) without one)"
            )

    def _capped_val_per_class(self, counts: torch.Tensor, class_names: list[str]) -> int:
        """``val_per_class``, or with ``cap_val_per_class`` at most half the rarest class."""
        rarest = int(counts.argmin())
        cap = int(counts[rarest]) // 2
        if not self.cap_val_per_class or self.val_per_class <= cap:
            return self.val_per_class
        if cap == 0:
            raise ValueError(
                f"cap_val_per_class: the rarest class {class_names[rarest]!r} has "
                f"{int(counts[rarest])} training image: no balanced validation split can be "
                "carved; give a validation folder (val) or val_per_class=0"
            )
        warnings.warn(
            f"{self.name}: val_per_class {self.val_per_class} capped to {cap} (half the "
            f"{int(counts[rarest])} images of the rarest class {class_names[rarest]!r}): "
            f"{cap} validation images per class",
            stacklevel=3,
        )
        return cap

    def _present(self, images: ImageList) -> ImageList:
        if not self.check_files:
            return images
        missing = missing_files(images)
        if not missing:
            return images
        named = ", ".join(f"{images.where(i)} {images.full_path(i)}" for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        if not self.skip_bad_images:
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed do not exist: {named}{more} "
                f"(pass skip_bad_images=True to skip them)"
            )
        warnings.warn(f"skipping {len(missing)} missing image(s): {named}{more}", stacklevel=3)
        absent = set(missing)
        return images.subset([i for i in range(len(images)) if i not in absent])

    @staticmethod
    def _warn_shared_files(train: ImageList, other: ImageList, name: str) -> None:
        train_files = {_file_identity(train.full_path(i)) for i in range(len(train))}
        train_files.discard(None)
        shared = [i for i in range(len(other)) if _file_identity(other.full_path(i)) in train_files]
        if shared:
            named = ", ".join(other.full_path(i) for i in shared[:5])
            warnings.warn(
                f"{len(shared)} {name} image(s) are also training images: {named}"
                + (" ..." if len(shared) > 5 else ""),
                stacklevel=4,
            )

    # -- preprocessing that follows the pretrained weights -----------------------------------
    def follow_weights(self, backbone: nn.Module) -> Preprocessing | None:
        """Use ``backbone``'s pretrained preprocessing (mean / std, size, resize, interpolation).

        Returns what the weights expect (:meth:`Preprocessing.from_backbone`), ``None`` (and
        nothing changes) for a backbone without timm's ``pretrained_cfg``.

        Raises:
            ValueError: ``image_size``, ``resize`` or ``interpolation`` was given and differs from
                the weights' (the message names both), or the weights' channel count is not 3.
        """
        weights = Preprocessing.from_backbone(backbone)
        if weights is None:
            return None
        name = weights_name(backbone)
        self.check_channels(weights, backbone)
        for argument, given in self.given_preprocessing.items():
            expected = getattr(weights, argument)
            if given is not None and given != expected:
                raise ValueError(
                    f"{argument}={given!r} (the data's argument) conflicts with the pretrained "
                    f"backbone {name}, whose preprocessing has {argument}={expected!r}: remove "
                    f"{argument} from the data's arguments (the weights set it)"
                )
        self.mean, self.std = weights.mean, weights.std
        self.image_size, self.resize = weights.image_size, weights.resize
        self.interpolation = weights.interpolation
        return weights

    # -- LightningDataModule hooks ----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018 - reads and checks the lists on every rank
        # The first hook of every stage: the loaders (built later) then use the weights'
        # preprocessing, and the module's setup records it for the checkpoint.
        self.follow_the_modules_weights()

    @property
    def predict_split(self) -> str:
        """The split ``ltlight predict`` runs on: ``"predict"`` with new images, else ``"test"``."""
        return "test" if self.predict_source is None else "predict"

    def predict_dataloader(self) -> FileDataLoader:
        return self._loader(self.predict_split, self._eval_batch_size)

    @property
    def predict_files(self) -> list[str] | None:
        """The images :meth:`predict_dataloader` yields, in its order, relative to their root
        (the ``file`` column of ``ltlight predict``'s predictions.csv)."""
        images = self.splits[self.predict_split]
        return None if images is None else list(images.paths)

    def make_dataset(
        self, images: ImageList, train: bool, size: int, resize: int, skip_bad_images: bool
    ) -> ImageFileDataset:
        """The dataset a loader decodes from (a subclass may read the images from elsewhere)."""
        return ImageFileDataset(
            images, train=train, size=size, resize=resize, skip_bad_images=skip_bad_images
        )

    def make_loader(
        self, split: str, batch_size: int, device: torch.device, rank: int, world_size: int
    ) -> FileDataLoader:
        images = self.splits[split]
        if images is None:
            raise ValueError(
                f"{self.name}: no {split} split: give one (or val_per_class > 0 for validation)"
            )
        self._check_resize()
        augment = split == "train" and self.augment
        dataset = self.make_dataset(
            images,
            train=augment,
            size=self.image_size,
            resize=self.resize,
            skip_bad_images=self.skip_bad_images,
        )
        dataset.interpolation = self.interpolation
        dataset.five_crop = self.five_crop and split != "train"  # evaluation splits only
        decoder = self.decoder
        if decoder == "dali" and dataset.five_crop:
            decoder = "pil"  # five crops need the whole image: no region for DALI to decode
        if decoder == "dali" and self.interpolation != "bilinear":
            raise ValueError(
                f"decoder='dali' resizes bilinearly, but the interpolation is "
                f"{self.interpolation!r} (the pretrained weights' or typed): use decoder='pil'"
            )
        return FileDataLoader(
            dataset,
            batch_size,
            mean=self.mean,
            std=self.std,
            shuffle=split == "train",
            color_jitter=self.color_jitter if augment else 0.0,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            num_workers=self.num_workers,
            device=device,
            decode_on_device=self.decode_on_device,
            decoder=decoder,
            sampling=self.sampling if split == "train" else "instance",
        )


def _file_identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path`` (the same for a symbolic or hard link to it),
    ``None`` if there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _check_same_classes(theirs: list[str], ours: list[str], whose: str) -> None:
    """``ValueError`` naming the first class that differs between ``theirs`` and ``ours``."""
    if list(theirs) == list(ours):
        return
    unknown = [name for name in ours if name not in theirs]
    if unknown:
        problem = f"class {unknown[0]!r} is not one of {whose}'s {len(theirs)} classes"
    else:
        index = next(
            (i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b),
            min(len(theirs), len(ours)),
        )
        problem = (
            f"{whose} has {len(theirs)} classes, this data {len(ours)}; class {index} is "
            f"{theirs[index] if index < len(theirs) else None!r} there, "
            f"{ours[index] if index < len(ours) else None!r} here"
        )
    raise ValueError(f"the data's classes differ from {whose}'s: {problem}")


def _rows_of_small_class(train: ImageList, per_class: int) -> str:
    """Where a list (CSV, split file) names the images of its first class with ``<= per_class``
    of them: a stray label (an index beyond the classes) shows up as such a class."""
    if not train.lines:
        return ""
    counts = torch.bincount(train.labels)
    small = (counts <= per_class).nonzero().flatten().tolist()
    rows = (train.labels == small[0]).nonzero().flatten().tolist()[:3] if small else []
    return f"; its images are listed at {', '.join(train.where(i) for i in rows)}" if rows else ""
