"""Preprocessing: what turns a raw image into the network's input, saved in the checkpoint.

ltlight's loaders normalise on the device (``(x / 255 − mean) / std``) and the file datamodules
resize and centre-crop: none of it lives in the network. A trained model called on raw images
would see uint8 pixels or the wrong size. :class:`~ltlight.LongTailModule` records the
datamodule's preprocessing at set-up and writes it into its checkpoints, so
``LongTailModule.load_from_checkpoint(path).predict_images(uint8_images)`` prepares the images
exactly as the evaluation loader did. :class:`Normalize` is the one normalisation both loaders
and :class:`Preprocessing` apply.

A pretrained backbone says how its inputs were prepared (timm's ``pretrained_cfg``: mean/std,
input size, crop fraction, interpolation); :meth:`Preprocessing.from_backbone` reads it, and the
file datamodules follow it (:meth:`~ltlight.data.FileLongTailDataModule.follow_weights`), so
there is no second place to type it. torchvision's weights carry the same facts in their
``transforms()``; :func:`pretrained_cfg_of_torchvision_weights` writes them in timm's form.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode

from ltlight.checks import check_choice, check_integer

#: The resampling filters the loaders and :class:`Preprocessing` apply (antialiased).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
#: Five-crop test-time ensembling resizes the shorter side to ``image_size + FIVE_CROP_MARGIN``
#: (LIFT, Shi et al., ICML 2024: ``Resize(224 + 24)``, ``FiveCrop(224)``).
FIVE_CROP_MARGIN = 24


class Normalize:
    """uint8 (0..255) batch → float32 ``(x / 255 − mean) / std``, per channel, in one fused pass.

    Args:
        mean: per-channel mean of the [0, 1] images.
        std: per-channel standard deviation, every value > 0.
        device: where the constants live (the batches' device).
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"
    ) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have one value per channel, got {mean}, {std}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be > 0 for every channel, got {list(std)}")
        mean64 = torch.tensor(mean, dtype=torch.float64)
        std64 = torch.tensor(std, dtype=torch.float64)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        # x · scale + shift with scale = 1 / (255 σ), shift = −μ / σ (computed in float64).
        self.scale = (1.0 / (255.0 * std64)).float().view(1, -1, 1, 1).to(device)
        self.shift = (-mean64 / std64).float().view(1, -1, 1, 1).to(device)

    def __call__(self, images: Tensor) -> Tensor:
        return torch.addcmul(self.shift, images, self.scale)  # uint8 promotes to float32


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation preprocessing of uint8 images ``(N, C, H, W)``.

    Args:
        mean: per-channel mean of the [0, 1] images.
        std: per-channel standard deviation, every value > 0.
        image_size: side of the network's square input; ``None``: images are used at their size.
        resize: shorter side the image is resized to before the centre crop of ``image_size``
            (the file datamodules' 256 → 224; timm's ``floor(image_size / crop_pct)``);
            ``None``: resized straight to ``image_size``.
        class_names: names of the classes, in index order, if the datamodule has them.
        interpolation: the resampling filter, one of :data:`INTERPOLATIONS` (CLIP: bicubic).
        five_crop: test-time ensembling: resize the shorter side to ``image_size + 24`` and take
            torchvision's ``FiveCrop(image_size)``; the images become ``(N, 5, C, S, S)`` and
            :class:`~ltlight.LongTailModule` averages the five crops' logits.

    Example:
        >>> prep = Preprocessing(mean=(0.5,), std=(0.25,), image_size=4)
        >>> round(prep(torch.full((1, 1, 8, 8), 255, dtype=torch.uint8))[0, 0, 0, 0].item(), 6)
        2.0
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int | None = None
    resize: int | None = None
    class_names: tuple[str, ...] | None = None
    interpolation: str = "bilinear"
    five_crop: bool = False

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(
                f"mean and std need one value per channel, got {self.mean}, {self.std}"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std must be finite and > 0 for every channel, got {self.std}")
        for name in ("image_size", "resize"):
            check_integer(name, getattr(self, name), 1, optional=True)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if self.five_crop and self.image_size is None:
            raise ValueError("five_crop needs an image_size (the side of the five crops)")

    @property
    def crop_pct(self) -> float | None:
        """The centre crop's fraction of the resized shorter side (timm's ``crop_pct``)."""
        if self.image_size is None or self.resize is None:
            return None
        return self.image_size / self.resize

    @classmethod
    def from_datamodule(cls, datamodule: Any) -> "Preprocessing | None":
        """The datamodule's ``mean``, ``std``, ``image_size``, ``resize``, ``class_names``,
        ``interpolation`` and ``five_crop``; ``None`` if it has no ``mean``/``std`` (its loader
        then hands over finished tensors)."""
        mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        if mean is None or std is None:
            return None
        names = getattr(datamodule, "class_names", None)
        return cls(
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) for s in std),
            image_size=_optional_int(getattr(datamodule, "image_size", None)),
            resize=_optional_int(getattr(datamodule, "resize", None)),
            class_names=tuple(str(n) for n in names) if names else None,
            interpolation=getattr(datamodule, "interpolation", None) or "bilinear",
            five_crop=bool(getattr(datamodule, "five_crop", False)),
        )

    @classmethod
    def from_backbone(cls, backbone: nn.Module) -> "Preprocessing | None":
        """What a pretrained backbone's weights expect: timm's ``resolve_model_data_config``.

        Any module with timm's ``pretrained_cfg`` attribute (every timm model; a torchvision
        model given :func:`pretrained_cfg_of_torchvision_weights`); ``None`` without one. The
        input side is the model's own when it accepts only one (a timm ViT made with
        ``img_size``: its ``patch_embed.img_size``), else the config's ``input_size``; ``resize``
        is timm's ``floor(image_size / crop_pct)``. The name of the weights is
        :func:`weights_name`.

        Raises:
            ValueError: a non-square input size, a crop mode other than ``"center"``, or an
                interpolation outside :data:`INTERPOLATIONS` (the message names the weights).
        """
        if not getattr(backbone, "pretrained_cfg", None):
            return None
        from timm.data import resolve_model_data_config

        config = resolve_model_data_config(backbone)
        name = weights_name(backbone)
        _, height, width = _fixed_input_size(backbone) or config["input_size"]
        if height != width:
            raise ValueError(
                f"{name}: input size {height}x{width} is not square (ltlight crops squares)"
            )
        crop_mode = config.get("crop_mode", "center")
        if crop_mode != "center":
            raise ValueError(f"{name}: crop_mode {crop_mode!r} is not supported (only 'center')")
        interpolation = str(config["interpolation"])
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{name}: interpolation {interpolation!r} is not one of {INTERPOLATIONS}"
            )
        # + 1e-6: crop_pct = 224 / 232 must give 232 back, not 231.99999999999997 → 231
        resize = math.floor(height / float(config["crop_pct"]) + 1e-6)
        return cls(
            mean=tuple(float(m) for m in config["mean"]),
            std=tuple(float(s) for s in config["std"]),
            image_size=int(height),
            resize=max(int(height), resize),
            interpolation=interpolation,
        )

    def to_dict(self) -> dict[str, Any]:
        """Primitive values only, so the checkpoint loads with ``weights_only=True``."""
        state = asdict(self)
        state["mean"], state["std"] = list(self.mean), list(self.std)
        if self.class_names is not None:
            state["class_names"] = list(self.class_names)
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "Preprocessing":
        names = state.get("class_names")
        return cls(
            mean=tuple(state["mean"]),
            std=tuple(state["std"]),
            image_size=state.get("image_size"),
            resize=state.get("resize"),
            class_names=tuple(names) if names is not None else None,
            interpolation=state.get("interpolation", "bilinear"),  # older checkpoints: bilinear
            five_crop=bool(state.get("five_crop", False)),
        )

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 images ``(N, C, H, W)`` (or one ``(C, H, W)``) → normalised float32 input,
        ``(N, 5, C, S, S)`` with :attr:`five_crop`."""
        if images.dtype != torch.uint8:
            raise ValueError(
                f"images must be uint8 pixels 0..255 (N, C, H, W), got dtype {images.dtype}"
            )
        if images.dim() == 3:
            images = images.unsqueeze(0)
        channels = len(self.mean)
        if images.dim() != 4 or images.shape[1] != channels:
            raise ValueError(
                f"images must have shape (N, {channels}, H, W), got {tuple(images.shape)}"
            )
        x = self.resize_and_crop(images.float())  # 0..255: resizing is linear
        return Normalize(self.mean, self.std, device=x.device)(x)

    def resize_and_crop(self, x: Tensor) -> Tensor:
        """Float images ``(N, C, H, W)`` at the network's size: the five crops with
        :attr:`five_crop`, else resized (and centre-cropped); unchanged without ``image_size``."""
        if self.five_crop:
            return five_crops(x, self.image_size, self.interpolation)
        if self.image_size is None:
            return x
        return self._resize(x)

    def _resize(self, x: Tensor) -> Tensor:
        size = self.image_size
        height, width = x.shape[-2:]
        mode = InterpolationMode(self.interpolation)
        if self.resize is None:
            if (height, width) == (size, size):
                return x
            return TF.resize(x, [size, size], interpolation=mode, antialias=True)
        scale = self.resize / min(height, width)  # shorter side → resize, then centre crop
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        if new != (height, width):
            x = TF.resize(x, list(new), interpolation=mode, antialias=True)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        return x[..., top : top + size, left : left + size]


def five_crops(images: Tensor, size: int, interpolation: str = "bilinear") -> Tensor:
    """``Resize(size + 24)`` (shorter side) then torchvision's ``FiveCrop(size)``: images
    ``(..., C, H, W)`` → ``(..., 5, C, size, size)``, crops in FiveCrop's order (top-left,
    top-right, bottom-left, bottom-right, centre). uint8 stays uint8 (rounded)."""
    mode = InterpolationMode(interpolation)
    resized = TF.resize(images, [size + FIVE_CROP_MARGIN], interpolation=mode, antialias=True)
    return torch.stack(TF.five_crop(resized, [size, size]), dim=-4)


def pretrained_cfg_of_torchvision_weights(weights: Any) -> dict[str, Any]:
    """A torchvision ``WeightsEnum``'s evaluation transform in timm's ``pretrained_cfg`` form.

    Set it as the model's ``pretrained_cfg`` attribute and :meth:`Preprocessing.from_backbone`
    (so the file datamodules) follow it like a timm model's: ``ResNet50_Weights.IMAGENET1K_V2``
    gives resize 232, crop 224, bilinear, ImageNet's mean / std.
    """
    transform = weights.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    return {
        "architecture": str(weights),
        "input_size": (3, crop, crop),
        "mean": tuple(float(m) for m in transform.mean),
        "std": tuple(float(s) for s in transform.std),
        "interpolation": InterpolationMode(transform.interpolation).value,
        "crop_pct": crop / resize,
        "crop_mode": "center",
    }


def weights_name(backbone: nn.Module) -> str:
    """The pretrained weights' name for messages: ``architecture.tag`` of the ``pretrained_cfg``."""
    config = getattr(backbone, "pretrained_cfg", None) or {}
    architecture = config.get("architecture") or type(backbone).__name__
    tag = config.get("tag")
    return f"{architecture}.{tag}" if tag else str(architecture)


def _fixed_input_size(backbone: nn.Module) -> tuple[int, int, int] | None:
    """``(C, H, W)`` a timm ViT accepts when it accepts one size only (its ``PatchEmbed``'s
    ``strict_img_size``), also inside a wrapper; ``None`` otherwise."""
    patch_embed = next((m for m in backbone.modules() if hasattr(m, "strict_img_size")), None)
    size = getattr(patch_embed, "img_size", None)
    if size is None or not patch_embed.strict_img_size:
        return None  # not a ViT, or one made with dynamic_img_size
    channels = getattr(getattr(patch_embed, "proj", None), "in_channels", 3)
    return (int(channels), int(size[0]), int(size[1]))


def input_channels(backbone: nn.Module) -> int | None:
    """The channels ``backbone`` takes: its first convolution's (a CNN's stem, a ViT's patch
    embedding), also when timm adapted it (``in_chans=1``); ``None`` without a convolution."""
    first = next((m for m in backbone.modules() if isinstance(m, nn.Conv2d)), None)
    return None if first is None else int(first.in_channels)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def class_name(names: Sequence[str] | None, index: int) -> str:
    """``names[index]``, or the index as text without names."""
    return str(names[index]) if names is not None and 0 <= index < len(names) else str(index)
