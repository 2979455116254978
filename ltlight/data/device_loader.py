"""A data loader that keeps the whole split on the training device and resumes exactly.

For the small datasets of long-tail research (CIFAR-10-LT is 12,406 images of 3 KiB) a
``DataLoader`` with workers spends its time in per-sample PIL work and host-to-device copies.
:class:`DeviceDataLoader` instead holds the split as one uint8 tensor ``(N, C, H, W)`` plus int64
labels on the device, and every batch is one index, one crop/flip and one fused normalisation
there (see :mod:`ltlight.data.augment`).

What each rank sees is a pure function of ``(seed, epoch, batch index, rank)``: the epoch's order
comes from a generator seeded with ``(seed, epoch)``, a batch's crop/flip numbers from one seeded
with ``(seed, epoch, rank, batch index)``. There is no RNG state to save, so a run that resumes
mid-epoch (``state_dict`` → ``load_state_dict``, which Lightning does for loaders that implement
both) gets exactly the batches it would have seen.

Lightning integration (2.6):

* ``loader.sampler.set_epoch(epoch)`` is called by the fit loop before each epoch (and it may call
  ``iter(loader)`` *before* that), so the epoch is read when the first batch is drawn, not when
  the iterator is created;
* Lightning only injects a ``DistributedSampler`` into ``torch.utils.data.DataLoader``; this loader
  shards itself: the datamodule passes ``trainer.global_rank`` and ``trainer.world_size``;
* ``class_balanced = True`` (set by deferred re-sampling) makes each following epoch a
  class-balanced sample of the same length, also sharded across ranks;
* a batch is handed out before it is trained on, so after an exception inside a step (or a
  Ctrl-C) the loader has yielded one batch more than the step counter holds, and Lightning runs
  that batch again on resume. ``progress`` — set by the datamodule to Lightning's count of the
  epoch's processed batches — makes ``state_dict`` record the batches actually trained on.
"""

import hashlib
import math
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ltlight.data.augment import Normalize, random_crop_flip

# Independent random streams derived from the one user seed.
_ORDER_STREAM, _AUGMENT_STREAM = 1, 2


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers, identical on every platform and Python run (unlike ``hash``)."""
    packed = struct.pack(f"<{len(values)}q", *values)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little") >> 1


class EpochSampler:
    """The sample indices one rank visits in one epoch; Lightning calls :meth:`set_epoch`.

    Shuffled order: ``torch.randperm(N)`` from ``(seed, epoch)``; class-balanced order: ``N``
    draws, each a uniformly random class then a uniformly random image of it (with replacement,
    as the class-balanced sampler of the LDAM-DRW code); unshuffled order: ``0 … N−1``. Rank ``r``
    takes positions ``r, r + world_size, …``. For training (``pad``) the order is first padded by
    repeating its start to a multiple of ``world_size`` — exactly
    ``torch.utils.data.DistributedSampler`` — so every rank takes as many optimiser steps, as DDP
    needs. For evaluation it is not: the shards may differ by one image, and every image is
    counted exactly once (Lightning's logging and torchmetrics sum over ranks whatever the
    number of batches each had).

    Args:
        labels: ``(N,)`` class indices (any device; kept on the CPU here).
        shuffle: draw a new order every epoch; ``False`` for evaluation.
        seed: the user seed.
        rank: this process's global rank in ``[0, world_size)``.
        world_size: number of processes, ≥ 1.
        pad: equal shards by repetition; ``None``: when shuffling (training), not otherwise.
    """

    def __init__(
        self,
        labels: Tensor,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool | None = None,
    ) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if len(labels) == 0:
            raise ValueError("the split is empty: a loader needs at least one image")
        self.labels = labels.detach().to("cpu", torch.int64)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.class_balanced = False
        self.pad = shuffle if pad is None else pad
        n = len(self.labels)
        if not self.pad and n < world_size:
            # a process without a batch would skip the evaluation loop (and its collectives)
            raise ValueError(
                f"the split has {n} image(s) for world_size={world_size} processes: unpadded "
                "(evaluation) shards need at least one image per process"
            )
        # padded: ceil(N / W) each; unpadded: the positions r, r + W, ... below N
        self.num_samples = math.ceil((n if self.pad else n - rank) / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def global_order(self, epoch: int | None = None) -> Tensor:
        """This epoch's order over all ranks (before padding), int64 on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, _ORDER_STREAM, epoch))
        if not self.class_balanced:
            return torch.randperm(n, generator=generator)
        counts = torch.bincount(self.labels)
        present = counts.nonzero().flatten()
        by_class = torch.sort(self.labels, stable=True).indices
        class_start = torch.cumsum(counts, 0) - counts
        classes = present[torch.randint(len(present), (n,), generator=generator)]
        offsets = (torch.rand(n, generator=generator, dtype=torch.float64) * counts[classes]).long()
        return by_class[class_start[classes] + offsets]

    def indices(self, epoch: int | None = None) -> Tensor:
        """This rank's indices for the epoch: a disjoint shard of the (padded) global order."""
        order = self.global_order(epoch)
        if not self.pad:
            return order[self.rank :: self.world_size]
        total = self.num_samples * self.world_size
        if total > len(order):  # pad like DistributedSampler, so every rank has as many batches
            repeats = math.ceil(total / len(order))
            order = torch.cat([order, order.repeat(repeats)[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class ResumableEpochLoader:
    """What both loaders share: an :class:`EpochSampler` and the position inside its epoch.

    A subclass sets ``self.sampler`` and calls :meth:`_init_position` in its constructor, starts
    each ``__iter__`` with ``epoch, start = self._begin_epoch()``, sets ``_batches_yielded`` as it
    yields, and so gets ``class_balanced``, ``state_dict`` / ``load_state_dict`` and ``progress``.
    """

    sampler: EpochSampler

    def _init_position(self) -> None:
        # Position inside the current epoch, for state_dict(); _resume is a loaded, unused state.
        self._epoch = 0
        self._batches_yielded = 0
        self._resume: tuple[int, int] | None = None
        #: How many of this epoch's batches the consumer has finished (set by the datamodule).
        self.progress: Callable[[], int] | None = None

    @property
    def class_balanced(self) -> bool:
        """Draw each epoch class-balanced (deferred re-sampling); takes effect at the next epoch."""
        return self.sampler.class_balanced

    @class_balanced.setter
    def class_balanced(self, value: bool) -> None:
        self.sampler.class_balanced = bool(value)

    def _begin_epoch(self) -> tuple[int, int]:
        """``(epoch, first batch index)``: a loaded state skips its batches once, in its epoch.

        Call it when the first batch is requested (a generator's body), after Lightning has
        called ``set_epoch`` / ``load_state_dict`` — it may call ``iter()`` before either.
        """
        epoch = self.sampler.epoch
        start = 0
        if self._resume is not None:
            resume_epoch, resume_batches = self._resume
            self._resume = None
            if resume_epoch == epoch:
                start = resume_batches
        self._epoch, self._batches_yielded = epoch, start
        return epoch, start

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: ``{"epoch", "batches_yielded", "class_balanced"}``.

        ``batches_yielded`` counts the batches handed out, or with ``progress`` those finished:
        a batch yielded but not trained on when the state is saved is yielded again on resume.
        """
        batches = self._batches_yielded
        if self.progress is not None:
            batches = min(batches, int(self.progress()))
        return {
            "epoch": self._epoch,
            "batches_yielded": batches,
            "class_balanced": self.class_balanced,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Make the next iteration of epoch ``state_dict["epoch"]`` skip the batches already seen.

        The skip applies once, and only if the sampler's epoch is that epoch when the first batch
        is drawn (a state saved at the end of an epoch leaves the next epoch untouched).
        """
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches_yielded"])
        self._resume = (epoch, batches)
        self._epoch, self._batches_yielded = epoch, batches
        if "class_balanced" in state_dict:
            self.class_balanced = state_dict["class_balanced"]


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
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
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
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.crop_padding = crop_padding
        self.flip = flip
        self.drop_last = drop_last
        self.normalize = Normalize(mean, std, device=self.device)
        self.sampler = EpochSampler(labels, shuffle, seed=seed, rank=rank, world_size=world_size)
        # DataLoader's attribute; Lightning reads it (with `sampler`) to tell shuffled loaders.
        self.batch_sampler = None
        self._init_position()

    @property
    def augment(self) -> bool:
        return self.crop_padding is not None or self.flip

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return math.ceil(len(self.sampler) / self.batch_size)

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
                generator.manual_seed(
                    derive_seed(
                        self.sampler.seed, _AUGMENT_STREAM, epoch, self.sampler.rank, batch_index
                    )
                )
                images = random_crop_flip(images, self.crop_padding or 0, generator, self.flip)
            self._batches_yielded = batch_index + 1
            yield self.normalize(images), self.labels[batch]
