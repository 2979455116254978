"""Region decoding with NVIDIA DALI: the file loader's second decoder (``decoder="dali"``).

Pillow and torchvision decode every pixel of a JPEG, however small the crop; DALI's image
decoders (NVIDIA nvImageCodec: libjpeg-turbo on the CPU, nvJPEG or the hardware decoder on a GPU)
take a region and decode only that window — the lines above it are skipped without an inverse
DCT, the decoding stops after its last line. Everything that makes a sample reproducible stays
ltlight's: the dataset still reads the file and draws the crop box (torchvision's
``RandomResizedCrop`` from the sample's generator), the flip and the colour-jitter factors
(:class:`~ltlight.data.files.dataset.EncodedImage`); sampling, DDP shards and exact resume are
the loader's as with Pillow. DALI only decodes.

* On the CPU (``device_id=None``: no GPU needed), ``num_threads`` DALI threads decode the
  regions; the loader's process resizes each region with the Pillow backend's own call
  (:func:`~ltlight.data.files.dataset.resize_and_flip`: DALI's CPU resize measured 1.1 ms per
  crop against torch's 0.2 ms on the uint8 crop), flips and jitters with the sample's own factors.
  DALI's libjpeg-turbo gives Pillow's pixels, so a batch equals the Pillow backend's bit for bit
  wherever Pillow does not decode at reduced size (``draft``: crops of at least twice the output
  side); where it does, within a few levels.
* On a GPU (``mixed``): nvJPEG decodes the regions on the device and DALI resizes and flips the
  batch there; jitter and normalisation run on the batch as with ``decode_on_device``.

The next batch decodes while the loader finishes the current one and the model trains on it
(one batch ahead). A file that DALI cannot decode (truncated, corrupt) makes its batch decode
again with Pillow, one sample at a time, which names the file or skips it
(``skip_bad_images``) exactly as the Pillow backend does.

Needs the optional extra: ``pip install 'ltlight[dali]'`` (the CUDA 12 wheel; its CPU decoders
run without a GPU).
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ltlight.data.files.color_jitter import color_jitter_with
from ltlight.data.files.dataset import EncodedImage, resize_and_flip
from ltlight.preprocessing import Normalize

#: What ``pip`` installs for ``decoder="dali"``.
INSTALL = "pip install 'ltlight[dali]' (or pip install nvidia-dali-cuda120)"


def require_dali() -> Any:
    """The ``nvidia.dali`` package, or a one-line ``ImportError`` saying what to install."""
    try:
        import nvidia.dali
    except ImportError:
        raise ImportError(f"decoder='dali' needs NVIDIA DALI: {INSTALL}") from None
    return nvidia.dali


@dataclass
class _Batch:
    """A batch handed to DALI (or not: ``scheduled`` is false when all its files were bad)."""

    samples: list[EncodedImage]
    labels: Tensor
    bad: list[str]
    scheduled: bool


class DaliRegionDecoder:
    """Decodes batches of :class:`~ltlight.data.files.dataset.EncodedImage` with DALI.

    Args:
        size: output side of the crops.
        batch_size: the largest batch (DALI allocates for it).
        num_threads: DALI's decoding threads, ≥ 1 (the loader passes its ``num_workers``).
        device: the training device; with ``on_device`` a CUDA device, DALI decodes there.
        on_device: decode on ``device`` (``mixed``: nvJPEG) instead of the CPU.
        fallback: decodes one sample with Pillow (a file DALI refused), returning ``None`` for a
            file to skip; raises for a file to name.
        normalize: on the CPU, normalise each crop right after its resize and jitter, while it
            is in the cache, into the float batch (a pass over the whole batch afterwards
            costs several times more on a memory-bound CPU); ``None``: hand over uint8 crops.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        num_threads: int,
        device: torch.device,
        on_device: bool,
        fallback: Callable[[EncodedImage], Tensor | None],
        normalize: Normalize | None = None,
    ) -> None:
        require_dali()
        self.size = size
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.device = device
        self.on_device = on_device and device.type == "cuda"
        self.fallback = fallback
        self.normalize = None if self.on_device else normalize
        self._pipeline: Any = None
        self._scheduled = 0  # runs whose output is not collected yet
        self._iteration = 0  # which decode_ahead owns the pipeline

    # -- the DALI pipeline, built on first use -------------------------------------------------
    def _build(self) -> Any:
        from nvidia.dali import fn, pipeline_def, types

        on_device = self.on_device
        device_id = (self.device.index or 0) if on_device else None

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            device_id=device_id,
            prefetch_queue_depth=1,  # the loader keeps one batch in flight itself
            # Outputs stay valid while the next batch decodes (the legacy executor reuses them).
            exec_dynamic=True,
        )
        def regions() -> Any:
            data = fn.external_source(name="data", dtype=types.UINT8, ndim=1)
            anchor = fn.external_source(name="anchor", dtype=types.INT32, ndim=1)
            shape = fn.external_source(name="shape", dtype=types.INT32, ndim=1)
            images = fn.decoders.image_slice(
                data, anchor, shape,
                device="mixed" if on_device else "cpu", output_type=types.RGB,
                normalized_anchor=False, normalized_shape=False, axis_names="WH",
                adjust_orientation=False,  # as Pillow (and torchvision's ImageFolder): no EXIF turn
            )  # fmt: skip
            if not on_device:
                return images  # regions of their own size: resized by the loader's process
            flip = fn.external_source(name="flip", dtype=types.INT32, ndim=0)
            images = fn.resize(
                images, size=[self.size, self.size], interp_type=types.INTERP_LINEAR,
                antialias=True,
            )  # fmt: skip
            return fn.flip(images, horizontal=flip)

        pipeline = regions()
        pipeline.build()
        return pipeline

    def _schedule(self, samples: list[EncodedImage]) -> None:
        if self._pipeline is None:
            self._pipeline = self._build()
        pipeline = self._pipeline
        pipeline.feed_input("data", [sample.data.numpy() for sample in samples])
        pipeline.feed_input(
            "anchor", [np.array([s.box[1], s.box[0]], dtype=np.int32) for s in samples]
        )
        pipeline.feed_input(
            "shape", [np.array([s.box[3], s.box[2]], dtype=np.int32) for s in samples]
        )
        if self.on_device:
            pipeline.feed_input("flip", [np.array(int(s.flip), dtype=np.int32) for s in samples])
        pipeline.schedule_run()
        self._scheduled += 1

    def _drain(self) -> None:
        """Collect and drop what an abandoned iteration left in flight."""
        while self._scheduled:
            self._collect(_Batch([], torch.empty(0), [], scheduled=True))

    # -- decoding ahead --------------------------------------------------------------------------
    def decode_ahead(
        self, batches: Iterator[tuple[list[EncodedImage], Tensor, list[str]]]
    ) -> Iterator[tuple[Tensor, Tensor, list[str]]]:
        """``(images (B, 3, size, size), labels, bad paths)`` for each batch of ``batches``: uint8
        crops, or with ``normalize`` the normalised float batch.

        Batch ``k + 1`` is read (by ``batches``) while DALI decodes batch ``k``, and decoded
        while batch ``k`` is finished and used. An iteration left early (an exception in the
        training step, ``limit_train_batches``) leaves a batch in flight: the iteration collects
        it when it is closed, or the next one before it starts (an exception's traceback can keep
        the old one alive), so a new epoch never receives an old batch.
        """
        self._drain()
        self._iteration += 1
        iteration = self._iteration
        in_flight: _Batch | None = None
        try:
            for samples, labels, bad in batches:
                regions = self._collect(in_flight)
                previous, in_flight = in_flight, self._submit(samples, labels, bad)
                if previous is not None:
                    yield self._finish(previous, regions)
            if in_flight is not None:
                previous, in_flight = in_flight, None
                yield self._finish(previous, self._collect(previous))
        finally:
            if self._iteration == iteration:
                self._drain()

    def _submit(self, samples: list[EncodedImage], labels: Tensor, bad: list[str]) -> _Batch:
        # DALI decodes batches of JPEGs; a batch holding another format is Pillow's, which reads
        # every image mode as ltlight does (16-bit, float, transparency: image_modes.py).
        jpeg = all(bytes(sample.data[:3].tolist()) == b"\xff\xd8\xff" for sample in samples)
        batch = _Batch(samples, labels, bad, scheduled=bool(samples) and jpeg)
        if batch.scheduled:
            self._schedule(samples)
        return batch

    def _collect(self, batch: _Batch | None) -> Any:
        """DALI's output for ``batch`` (``None`` if it was not scheduled), or the error it met."""
        if batch is None or not batch.scheduled:
            return None
        self._scheduled -= 1
        try:
            return self._pipeline.outputs()[0]
        except RuntimeError as error:  # a file DALI cannot decode; the pipeline stays usable
            return error

    def _finish(self, batch: _Batch, regions: Any) -> tuple[Tensor, Tensor, list[str]]:
        if isinstance(regions, RuntimeError) or (regions is None and batch.samples):
            crops = [self.fallback(sample) for sample in batch.samples]
            bad = [
                sample.path
                for sample, crop in zip(batch.samples, crops, strict=True)
                if crop is None
            ]
            keep = [i for i, crop in enumerate(crops) if crop is not None]
            samples, labels = [batch.samples[i] for i in keep], batch.labels[keep]
            return self._assemble([crops[i] for i in keep], samples), labels, batch.bad + bad
        if regions is None:
            return self._assemble([], []), batch.labels, batch.bad
        if self.on_device:
            return self._device_batch(regions), batch.labels, batch.bad
        crops = (
            resize_and_flip(
                torch.from_numpy(np.asarray(region)).permute(2, 0, 1), self.size, s.flip
            )
            for region, s in zip(regions, batch.samples, strict=True)
        )
        return self._assemble(crops, batch.samples), batch.labels, batch.bad

    def _assemble(self, crops: Iterable[Tensor], samples: list[EncodedImage]) -> Tensor:
        """The batch of ``crops`` (uint8, on the CPU): each jittered with its sample's own
        numbers, then rounded to uint8 as a worker hands it over, and normalised if asked — one
        crop at a time, while it is in the cache."""
        shape = (len(samples), 3, self.size, self.size)
        out = torch.empty(shape, dtype=torch.uint8 if self.normalize is None else torch.float32)
        for k, (crop, sample) in enumerate(zip(crops, samples, strict=True)):
            pixels: Tensor = crop
            if sample.jitter is not None:
                factors, order = sample.jitter
                pixels = color_jitter_with(crop[None], factors, order, 255.0)[0].round_()
            if self.normalize is None:
                out[k].copy_(pixels)
            else:  # the float values of the rounded crop: Normalize's own arithmetic
                torch.addcmul(self.normalize.shift[0], pixels, self.normalize.scale[0], out=out[k])
        return out.to(self.device)

    def _device_batch(self, regions: Any) -> Tensor:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        dense = regions.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.uint8, device=self.device)
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(self.device))
        return out.permute(0, 3, 1, 2)
