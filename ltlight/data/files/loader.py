"""A loader of images stored as files: worker processes decode, the training device augments.

:class:`FileDataLoader` is the file counterpart of
:class:`~ltlight.data.tensor.loader.DeviceDataLoader` and behaves like it wherever training
depends on the loader: the same :class:`~ltlight.data.sampling.EpochSampler` decides each
epoch's order (seeded shuffle, or class-balanced draws once deferred re-sampling sets
``class_balanced``), shards it by ``rank`` / ``world_size`` (class counts stay those of the whole
set) and the same ``state_dict`` / ``load_state_dict`` / ``progress`` protocol resumes it
mid-epoch at the batch Lightning resumes at.

Inside, a ``torch.utils.data.DataLoader`` with persistent workers runs
:class:`~ltlight.data.files.dataset.ImageFileDataset`: each worker reads, decodes and crops an image
(per-sample seeds from the sampler) and hands over a uint8 crop; the batch then goes to the
device, where colour jitter (one seeded generator per batch), the float conversion and the
normalisation run on the whole batch at once. With ``decoder="dali"`` the dataset only reads the
files and draws each sample's random numbers, in this process, and DALI's threads decode the
crops' regions (:mod:`ltlight.data.files.dali`); the rest is the same.

Why not torchdata's ``StatefulDataLoader``: its state records the batches handed out, while
Lightning fetches one batch ahead, so a checkpoint saved after step ``k`` would resume after batch
``k + 1``; and it restores worker RNG states, which this loader does not have. Here a batch's
contents are a pure function of ``(seed, epoch, rank, batch index)``, so the position alone is the
whole state, exact with any number of workers.
"""

import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ltlight.checks import check_choice, check_integer, check_range
from ltlight.data.files.color_jitter import color_jitter
from ltlight.data.files.dataset import ImageFileDataset, collate, decode_batch_on_device
from ltlight.data.sampling import (
    JITTER_STREAM,
    SAMPLE_STREAM,
    EpochSampler,
    ResumableEpochLoader,
    derive_seed,
)
from ltlight.preprocessing import Normalize

#: The image decoders of the file datamodules (``decoder``): Pillow in worker processes, or DALI.
DECODERS = ("pil", "dali")


class _EpochBatches:
    """The ``batch_sampler`` of the inner DataLoader: this rank's epoch, batch by batch.

    Read in the main process when the DataLoader's iterator starts, after the owner has set
    ``epoch`` and ``start``; a training batch lists ``(index, seed)`` pairs, the seed being that
    sample's crop-and-flip seed.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, drop_last: bool, seeds: bool):
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seeds = seeds
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        return self.sampler.num_batches(self.batch_size, self.drop_last) - self.start

    def __iter__(self) -> Iterator[list]:
        indices = self.sampler.indices(self.epoch).tolist()
        size = self.batch_size
        for batch in range(self.start, self.start + len(self)):
            chunk = indices[batch * size : (batch + 1) * size]
            if self.seeds:
                first = batch * size
                yield [
                    (index, self.sampler.seed_for(SAMPLE_STREAM, self.epoch, first + k))
                    for k, index in enumerate(chunk)
                ]
            else:
                yield chunk


class FileDataLoader(ResumableEpochLoader):
    """Batches of ``(normalised float images, labels)`` on ``device`` from image files.

    Args:
        dataset: the split (its ``train`` flag decides crop-and-flip vs. centre crop).
        batch_size: images per batch and rank, ≥ 1.
        mean: per-channel mean of the [0, 1] images, for normalisation.
        std: per-channel standard deviation.
        shuffle: a new seeded order every epoch (training); ``False`` keeps the split's order.
        color_jitter: brightness / contrast / saturation strength of the batch colour jitter
            (0.4 in Kang et al.'s recipe; 0 for none).
        seed: the seed the order, the crops and the jitter derive from.
        rank: this process's global rank; ``world_size``: the number of processes.
        num_workers: decoding processes (persistent across epochs); 0 decodes in this process.
        drop_last: drop each rank's last incomplete batch.
        device: where the batches are made (and, with ``decode_on_device``, decoded).
        decode_on_device: workers only read files; JPEGs are decoded batch-wise on ``device``
            (nvJPEG on a GPU).
        decoder: ``"pil"`` (Pillow in ``num_workers`` processes) or ``"dali"`` (NVIDIA DALI,
            ``num_workers`` threads decoding only each crop's region; ``pip install
            'ltlight[dali]'``). The same samples either way: crop boxes, flips and jitter come
            from the same per-sample generators.
        sampling: the training order (``"instance"``, ``"class_balanced"``, ``"class_aware"``;
            :class:`~ltlight.data.sampling.EpochSampler`). Multi-label datasets (``(N, C)``
            float labels) give ``(B, C)`` float targets.
    """

    def __init__(
        self,
        dataset: ImageFileDataset,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        shuffle: bool = False,
        color_jitter: float = 0.0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        decode_on_device: bool = False,
        decoder: str = "pil",
        sampling: str = "instance",
    ) -> None:
        num_workers = check_integer("num_workers", num_workers, 0)
        check_range("color_jitter", color_jitter, 0)
        check_choice("decoder", decoder, DECODERS)
        sampler = EpochSampler(
            dataset.labels, shuffle, seed=seed, rank=rank, world_size=world_size, sampling=sampling
        )
        super().__init__(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.dataset.decode_in_worker = not decode_on_device and decoder == "pil"
        self.device = torch.device(device)
        # On the CPU each worker jitters its own crops (no big float batch to allocate and pass
        # over in this process, which competes with the workers for the same cores); on a GPU
        # the batch is jittered there at once.
        in_worker = self.device.type == "cpu" and not decode_on_device
        self.dataset.color_jitter = float(color_jitter) if in_worker else 0.0
        self.color_jitter = float(color_jitter)
        self.decode_on_device = decode_on_device
        self.decoder = decoder
        self.normalize = Normalize(mean, std, device=self.device)
        self.dali = None
        if decoder == "dali":
            from ltlight.data.files.dali import DaliRegionDecoder

            self.dali = DaliRegionDecoder(
                dataset.size, self.batch_size, max(1, num_workers), self.device,
                on_device=decode_on_device, fallback=dataset.decode_encoded,
                normalize=self.normalize if in_worker else None,
            )  # fmt: skip
            # Reading a file and drawing its numbers takes ~0.25 ms of CPU; DALI's threads do the
            # decoding, and worker processes would only add the cost of sending the bytes over.
            num_workers = 0
        self._batches = _EpochBatches(sampler, self.batch_size, drop_last, seeds=dataset.train)
        self.loader = DataLoader(
            dataset,
            batch_sampler=self._batches,
            num_workers=num_workers,
            collate_fn=collate,
            persistent_workers=num_workers > 0,
            pin_memory=self.device.type == "cuda" and self.dataset.decode_in_worker,
            # Its own generator: starting an iterator draws the workers' base seed, which from
            # the global RNG would shift dropout & co. of a resumed run (the samples' own seeds
            # come from the sampler, so the base seed is unused).
            generator=torch.Generator().manual_seed(derive_seed(seed, SAMPLE_STREAM)),
        )
        self.skipped: list[str] = []
        self._scratch: Tensor | None = None

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: nothing below runs until the first batch is requested.
        epoch, start = self._begin_epoch()
        if start >= len(self):
            return
        self._batches.epoch, self._batches.start = epoch, start
        jitter = self.color_jitter > 0 and self.dataset.train and not self.dataset.color_jitter
        generator = torch.Generator(device=self.device) if jitter else None
        source = self.loader if self.dali is None else self.dali.decode_ahead(iter(self.loader))
        for batch_index, (images, labels, bad) in enumerate(source, start):
            if bad:
                self._report_skipped(bad)
            if self.decode_on_device and self.dali is None:
                dataset = self.dataset
                images = decode_batch_on_device(
                    images, dataset.size, self.device, dataset.interpolation, dataset.five_crop
                )
            else:
                images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            if images.is_floating_point():  # normalised where it was decoded (DALI on the CPU)
                batch = images
            elif generator is not None:
                generator.manual_seed(self.sampler.seed_for(JITTER_STREAM, epoch, batch_index))
                jittered = color_jitter(self._as_float(images), self.color_jitter, generator)
                batch = jittered.mul_(self.normalize.scale).add_(self.normalize.shift)
            else:
                batch = self.normalize(images)
            self._batches_yielded = batch_index + 1
            yield batch, labels

    def _as_float(self, images: Tensor) -> Tensor:
        """``images`` as float32 in a buffer reused from batch to batch.

        A fresh float batch of 224² images is ~40 MB: on the CPU every such allocation is a new
        ``mmap`` whose pages fault in one by one, which costs more than the jitter itself.
        """
        if self._scratch is None or self._scratch.shape != images.shape:
            self._scratch = torch.empty(images.shape, dtype=torch.float32, device=self.device)
        return self._scratch.copy_(images)

    def _report_skipped(self, paths: list[str]) -> None:
        new = [path for path in paths if path not in self.skipped]
        self.skipped.extend(new)
        if new:
            warnings.warn(
                f"skipped {len(new)} image(s) that are missing or do not decode "
                f"({len(self.skipped)} so far): {', '.join(new)}",
                stacklevel=2,
            )
