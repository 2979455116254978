"""Decoding and per-image geometry of a file split: what a data-loader worker does for one image.

Training images get the recipe of Kang et al. (ICLR 2020) and the ImageNet-LT papers:
``RandomResizedCrop(224)`` (scale (0.08, 1), ratio (3/4, 4/3)) and a horizontal flip;
evaluation images ``Resize(256)`` (shorter side) + ``CenterCrop(224)``, or with ``five_crop``
``Resize(224 + 24)`` + ``FiveCrop(224)`` (test-time ensembling; the item is then five crops).
The resampling filter is ``interpolation`` (bilinear; bicubic for CLIP's weights). Colour jitter
(:mod:`ltlight.data.files.color_jitter`) runs here too when training on the CPU — one affine map per
image on its crop, cheap next to decoding — and on the whole batch on the GPU otherwise; workers
hand over uint8 crops, and normalisation and the float conversion run on the training device.

JPEG decoding is where the time goes. On the CPU, Pillow (libjpeg-turbo) decodes with ``draft``:
libjpeg scales the DCT by 1/2, 1/4 or 1/8 while decoding when the crop still keeps at least the
output size, so a large photo is never decoded at full size only to be shrunk. Decoding
elsewhere — batch-wise on the training device by ``torchvision.io.decode_jpeg`` (nvJPEG on a GPU,
:func:`decode_batch_on_device`), or by DALI (:mod:`ltlight.data.files.dali`) — the dataset
only reads the file and draws the sample's random numbers: an :class:`EncodedImage`.

Every random number of a sample comes from a ``torch.Generator`` seeded with the seed the sampler
hands over with the index, so the crop and flip of a sample are a pure function of
``(seed, epoch, position)``, whatever the number of workers (exact resume needs nothing else).
"""

import io
import math
import os
import warnings
from typing import Any, NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from ltlight.data.files.color_jitter import color_jitter, draw_jitter
from ltlight.data.files.image_list import ImageList
from ltlight.data.files.image_modes import to_rgb
from ltlight.preprocessing import FIVE_CROP_MARGIN, five_crops

#: RandomResizedCrop's defaults (torchvision, and every ImageNet-LT recipe).
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def random_resized_crop_box(
    height: int,
    width: int,
    generator: torch.Generator,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop: torchvision's ``RandomResizedCrop.get_params``.

    The same algorithm and the same sequence of random calls, drawn from ``generator`` instead of
    the global RNG: up to 10 tries of an area in ``scale`` × image area and a log-uniform aspect
    ratio in ``ratio``, then the largest centred crop whose ratio is in range.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(
            torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item()
        )
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, resize: int, size: int) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` in the original image of ``Resize(resize)`` + ``CenterCrop(size)``."""
    factor = min(height, width) / resize
    h, w = min(height, round(size * factor)), min(width, round(size * factor))
    return (height - h) // 2, (width - w) // 2, h, w


class BadImageError(ValueError):
    """An image file that is missing or does not decode; the message, one line, names the file.

    Raised in a DataLoader worker, it reaches the main process re-created by torch from a message
    that holds the worker's traceback; the constructor keeps that message's last line (this
    error's own), so what the user reads is the one line naming the file.
    """

    def __init__(self, message: str) -> None:
        last = message.rstrip().splitlines()[-1] if message.strip() else message
        super().__init__(last.split(f"{type(self).__name__}: ", 1)[-1])


class EncodedImage(NamedTuple):
    """A sample whose decoding happens outside the dataset: the file and its random numbers.

    Attributes:
        data: the file's bytes, uint8 ``(n,)``.
        box: ``(top, left, h, w)`` of the crop in the full-size image.
        flip: whether the crop is flipped horizontally.
        jitter: ``(factors, order)`` of the sample's colour jitter, each ``(1, 3)``
            (:func:`~ltlight.data.files.color_jitter.draw_jitter` from the sample's generator),
            or ``None`` when the sample is not jittered one by one.
        path: the file, for messages.
    """

    data: Tensor
    box: tuple[int, int, int, int]
    flip: bool
    jitter: tuple[Tensor, Tensor] | None
    path: str


def resize_and_flip(
    pixels: Tensor, size: int, flip: bool, interpolation: str = "bilinear"
) -> Tensor:
    """uint8 ``(3, h, w)`` crop → ``(3, size, size)``: antialiased ``interpolation`` (bilinear;
    bicubic for CLIP's weights), then flip.

    The one resize of every CPU decoder (Pillow's crops and DALI's regions alike); fastest when
    ``pixels`` is a channels-last view (an ``(h, w, 3)`` array permuted), as decoders give it.
    The result keeps that layout: whoever stacks or normalises the crops copies it anyway.
    """
    mode = TF.InterpolationMode(interpolation)
    crop = TF.resize(pixels, [size, size], interpolation=mode, antialias=True)
    return crop.flip(-1) if flip else crop


class ImageFileDataset(Dataset):
    """``(uint8 (3, size, size) crop, label, path)`` of the images in an :class:`ImageList`; the
    label is a class index, or a float ``(C,)`` target row for multi-label lists.

    Args:
        images: the split's paths and labels.
        train: random resized crop and flip (the item is ``(index, seed)``); otherwise
            ``Resize(resize)`` + ``CenterCrop(size)`` (the item is an index).
        size: output side, 224 in the recipes.
        resize: the evaluation resize of the shorter side, 256 in the recipes.
        draft: let libjpeg decode at 1/2, 1/4 or 1/8 scale when the crop keeps ≥ ``size`` pixels.
        color_jitter: strength of the per-image colour jitter applied here (training only; 0: the
            loader jitters the batch on the device instead, or not at all).
        decode_in_worker: decode here (``True``) or return an :class:`EncodedImage` for a
            decoder outside the dataset (``False``).
        skip_bad_images: return ``None`` as the image of a file that is missing or does not decode
            (the loader drops it and warns) instead of raising :class:`BadImageError`.
        interpolation: the resampling filter, ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        five_crop: evaluation only: ``Resize(size + 24)`` + ``FiveCrop(size)``, the image a uint8
            ``(5, 3, size, size)`` stack.
    """

    def __init__(
        self,
        images: ImageList,
        train: bool,
        size: int = 224,
        resize: int = 256,
        draft: bool = True,
        decode_in_worker: bool = True,
        skip_bad_images: bool = False,
        color_jitter: float = 0.0,
        interpolation: str = "bilinear",
        five_crop: bool = False,
    ) -> None:
        self.images = images
        self.labels = images.labels
        self.train = train
        self.size = size
        self.resize = resize
        self.draft = draft
        self.decode_in_worker = decode_in_worker
        self.skip_bad_images = skip_bad_images
        self.color_jitter = color_jitter
        self.interpolation = interpolation
        self.five_crop = five_crop and not train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[Any, int | Tensor, str]:
        index, seed = item if isinstance(item, tuple) else (item, 0)
        path = self.images.full_path(index)
        # a multi-label row is cloned: a view would ship the whole (N, C) storage between processes
        label = self.labels[index].clone() if self.labels.dim() == 2 else int(self.labels[index])
        try:
            data = self.read_bytes(index)
            image = Image.open(io.BytesIO(data))
            height, width = image.height, image.width
        except (OSError, UnidentifiedImageError) as error:
            return self._bad(path, label, error)
        generator = torch.Generator().manual_seed(seed)
        if self.train:
            box = random_resized_crop_box(height, width, generator)
            flip = bool(torch.rand(1, generator=generator).item() < 0.5)
        elif self.five_crop:
            box, flip = (0, 0, height, width), False
        else:
            box, flip = center_crop_box(height, width, self.resize, self.size), False
        if not self.decode_in_worker:
            jitter = None
            if self.train and self.color_jitter > 0:
                jitter = draw_jitter(1, self.color_jitter, generator)
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return EncodedImage(encoded, box, flip, jitter, path), label, path
        try:
            crop = self._decode_crop(image, box, flip, self.draft)
        except (OSError, ValueError) as error:
            return self._bad(path, label, error)
        if self.train and self.color_jitter > 0:
            crop = round_to_uint8(color_jitter(crop.unsqueeze(0), self.color_jitter, generator))[0]
        return crop, label, path

    def decode_encoded(self, sample: EncodedImage) -> Tensor | None:
        """What :meth:`__getitem__` decodes in a worker, from an :class:`EncodedImage`, with
        Pillow at full size (no ``draft``); ``None`` for a file that does not decode when
        ``skip_bad_images``, else :class:`BadImageError`. The jitter is left to the caller."""
        try:
            image = Image.open(io.BytesIO(sample.data.numpy().tobytes()))
            return self._decode_crop(image, sample.box, sample.flip, draft=False)
        except (OSError, ValueError, UnidentifiedImageError) as error:
            return self._bad(sample.path, -1, error)[0]

    def read_bytes(self, index: int) -> bytes:
        """The encoded image of sample ``index`` (a subclass may read it from elsewhere)."""
        with open(self.images.full_path(index), "rb") as f:
            return f.read()

    def _decode_crop(
        self, image: Image.Image, box: tuple[int, int, int, int], flip: bool, draft: bool
    ) -> Tensor:
        top, left, h, w = box
        full_width, full_height = image.size
        if self.five_crop:
            # the shorter side must keep >= size + 24 pixels (the resize before the crops)
            side = (self.size + FIVE_CROP_MARGIN) / min(h, w)
            wanted = (math.ceil(full_width * side), math.ceil(full_height * side))
        else:
            wanted = (math.ceil(full_width * self.size / w), math.ceil(full_height * self.size / h))
        if draft and image.format == "JPEG":
            # The smallest DCT scale at which the crop still has the pixels it is resized to.
            image.draft("RGB", wanted)
        scale_x, scale_y = image.size[0] / full_width, image.size[1] / full_height
        top, left = round(top * scale_y), round(left * scale_x)
        h, w = max(1, round(h * scale_y)), max(1, round(w * scale_x))
        image = to_rgb(image)  # 16-bit, float, transparent: image_modes says how
        region = image.crop((left, top, left + w, top + h))  # decodes, copies only the crop
        pixels = torch.from_numpy(np.array(region)).permute(2, 0, 1)  # CHW view, channels-last
        return crop_pixels(pixels, self.size, flip, self.interpolation, self.five_crop)

    def _bad(
        self, path: str, label: int | Tensor, error: BaseException
    ) -> tuple[None, int | Tensor, str]:
        if self.skip_bad_images:
            return None, label, path
        reason = "does not exist" if isinstance(error, FileNotFoundError) else "does not decode"
        raise BadImageError(f"{path}: image {reason} ({error}); pass skip_bad_images=True to skip")


def crop_pixels(
    pixels: Tensor, size: int, flip: bool, interpolation: str, five_crop: bool
) -> Tensor:
    """A decoded crop box ``(3, h, w)`` → the uint8 network input: :func:`resize_and_flip`, or
    with ``five_crop`` the ``(5, 3, size, size)`` five crops of the box's image."""
    if five_crop:
        return five_crops(pixels, size, interpolation)
    return resize_and_flip(pixels, size, flip, interpolation)


def round_to_uint8(images: Tensor) -> Tensor:
    """A jittered float batch on the uint8 scale back to uint8, rounded (what workers hand over)."""
    return images.round_().to(torch.uint8)


def collate(samples: list[tuple[Any, int | Tensor, str]]) -> tuple[Any, Tensor, list[str]]:
    """Stack a batch; images that are ``None`` (skipped bad files) are dropped, their paths kept.

    Returns ``(images, labels, bad_paths)``; ``images`` is a uint8 ``(B, 3, S, S)`` tensor, or for
    decoding outside the workers a list of :class:`EncodedImage`; ``labels`` int64 ``(B,)``, or
    float ``(B, C)`` multi-label targets.
    """
    good = [(image, label) for image, label, _ in samples if image is not None]
    bad = [path for image, _, path in samples if image is None]
    if samples and isinstance(samples[0][1], Tensor):  # multi-label: (C,) float targets
        width = len(samples[0][1])
        labels = torch.stack([label for _, label in good]) if good else torch.empty(0, width)
    else:
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
    images = [image for image, _ in good]
    if images and isinstance(images[0], Tensor):
        return torch.stack(images), labels, bad
    return images, labels, bad


def decode_batch_on_device(
    encoded: list[EncodedImage],
    size: int,
    device: torch.device,
    interpolation: str = "bilinear",
    five_crop: bool = False,
) -> Tensor:
    """Decode a batch of JPEG bytes on ``device`` (nvJPEG on a GPU) and crop / flip each image
    (:func:`crop_pixels`).

    Returns uint8 ``(B, 3, size, size)`` (``(B, 5, 3, size, size)`` with ``five_crop``) on
    ``device``.
    """
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its decoders in favour of TorchCodec, which has no batched
        # nvJPEG image decoder yet; this is the one GPU JPEG decoder torchvision ships.
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        decoded = decode_jpeg(
            [sample.data for sample in encoded], mode=ImageReadMode.RGB, device=device
        )
    crops = []
    for image, sample in zip(decoded, encoded, strict=True):
        top, left, h, w = sample.box
        region = image[:, top : top + h, left : left + w]
        crops.append(crop_pixels(region, size, sample.flip, interpolation, five_crop))
    shape = (0, 5, 3, size, size) if five_crop else (0, 3, size, size)
    return torch.stack(crops) if crops else torch.empty(shape, dtype=torch.uint8)


def missing_files(images: ImageList) -> list[int]:
    """Indices of the samples whose file does not exist (one ``stat`` per file)."""
    return [i for i in range(len(images)) if not os.path.isfile(images.full_path(i))]
