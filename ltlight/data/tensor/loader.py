"""A data loader that keeps the whole split on the training device.

For the small datasets of long-tail research (CIFAR-10-LT is 12,406 images of 3 KiB) a
``DataLoader`` with workers spends its time in per-sample PIL work and host-to-device copies.
:class:`DeviceDataLoader` instead holds the split as one uint8 tensor ``(N, C, H, W)`` plus int64
labels on the device, and every batch is one index, one crop/flip and one fused normalisation
there (see :mod:`ltlight.data.tensor.augment`). Its epochs, sharding and exact mid-epoch resume
are :mod:`ltlight.data.sampling`'s.
"""

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ltlight.data.sampling import AUGMENT_STREAM, EpochSampler, ResumableEpochLoader
from ltlight.data.tensor.augment import random_crop_flip
from ltlight.preprocessing import Normalize, Preprocessing


class DeviceDataLoader(ResumableEpochLoader):
    """Batches of ``(normalised float images, labels)`` from a split that lives on one device.

    Args:
        images: ``(N, C, H, W)`` uint8 images (moved to ``device``).
        labels: ``(N,)`` class indices (moved to ``device`` as int64).
        batch_size: images per batch, ≥ 1.
        mean: per-channel mean of the [0, 1] images, for normalisation.
        std: per-channel standard deviation.
        shuffle: a new seeded order every epoch (training); ``False`` keeps the split's order.
        crop_padding: zero padding of the random crop, or ``None`` for no crop.
        flip: random horizontal flips.
        preprocessing: resize (and centre-crop) the augmented batch as this
            :class:`~ltlight.preprocessing.Preprocessing` says (pretrained weights' size) before
            normalising; ``None``: the images' own size.
        seed: the one seed the order and the augmentation derive from.
        rank: this process's global rank; ``world_size``: number of processes.
        drop_last: drop each rank's last incomplete batch.
        device: where the data lives and the batches are made; default: where ``images`` are.

    Iterating yields ``len(loader)`` batches for this rank; ``sampler`` (``set_epoch``) and
    ``class_balanced`` control the epoch; ``state_dict`` / ``load_state_dict`` save and restore
    the position inside an epoch. ``progress``, if set, returns how many of this epoch's batches
    the consumer has finished (the datamodule sets it to Lightning's processed-batch count).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        crop_padding: int | None = None,
        flip: bool = False,
        preprocessing: Preprocessing | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {images.dtype} "
                f"of shape {tuple(images.shape)}"
            )
        if labels.shape != (len(images),):
            raise ValueError(
                f"labels must have shape ({len(images)},) like images, got {tuple(labels.shape)}"
            )
        if crop_padding is not None and crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0 or None, got {crop_padding}")
        sampler = EpochSampler(labels, shuffle, seed=seed, rank=rank, world_size=world_size)
        super().__init__(sampler, batch_size, drop_last)
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.crop_padding = crop_padding
        self.flip = flip
        self.preprocessing = preprocessing
        self.normalize = Normalize(mean, std, device=self.device)

    @property
    def augment(self) -> bool:
        return self.crop_padding is not None or self.flip

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: nothing below runs until the first batch is requested.
        epoch, start = self._begin_epoch()
        num_batches = len(self)
        if start >= num_batches:
            return
        indices = self.sampler.indices(epoch).to(self.device, non_blocking=True)
        generator = torch.Generator(device=self.device) if self.augment else None
        for batch_index in range(start, num_batches):
            batch = indices[batch_index * self.batch_size : (batch_index + 1) * self.batch_size]
            images = self.images[batch]
            if generator is not None:
                generator.manual_seed(self.sampler.seed_for(AUGMENT_STREAM, epoch, batch_index))
                images = random_crop_flip(images, self.crop_padding or 0, generator, self.flip)
            if self.preprocessing is not None:
                images = self.preprocessing.resize_and_crop(images.float())
            self._batches_yielded = batch_index + 1
            yield self.normalize(images), self.labels[batch]
