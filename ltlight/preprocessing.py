"""Preprocessing: what turns a raw image into the network's input, saved in the checkpoint.

ltlight's loaders normalise on the device (``(x / 255 − mean) / std``) and the file datamodules
resize and centre-crop: none of it lives in the network. A trained model called on raw images
would see uint8 pixels or the wrong size. :class:`~ltlight.LongTailModule` records the
datamodule's preprocessing at set-up and writes it into its checkpoints, so
``LongTailModule.load_from_checkpoint(path).predict_images(uint8_images)`` prepares the images
exactly as the evaluation loader did. :class:`Normalize` is the one normalisation both loaders
and :class:`Preprocessing` apply.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.checks import check_integer


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
            (the file datamodules' 256 → 224); ``None``: resized straight to ``image_size``.
        class_names: names of the classes, in index order, if the datamodule has them.

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

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(
                f"mean and std need one value per channel, got {self.mean}, {self.std}"
            )
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"std must be finite and > 0 for every channel, got {self.std}")
        for name in ("image_size", "resize"):
            check_integer(name, getattr(self, name), 1, optional=True)

    @classmethod
    def from_datamodule(cls, datamodule: Any) -> "Preprocessing | None":
        """The datamodule's ``mean``, ``std``, ``image_size``, ``resize``, ``class_names``;
        ``None`` if it has no ``mean``/``std`` (its loader then hands over finished tensors)."""
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
        )

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 images ``(N, C, H, W)`` (or one ``(C, H, W)``) → normalised float32 input."""
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
        x = images.float()  # the uint8 scale 0..255: resizing is linear, Normalize divides
        if self.image_size is not None:
            x = self._resize(x)
        return Normalize(self.mean, self.std, device=x.device)(x)

    def _resize(self, x: Tensor) -> Tensor:
        size = self.image_size
        height, width = x.shape[-2:]
        if self.resize is None:
            if (height, width) == (size, size):
                return x
            return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        scale = self.resize / min(height, width)  # shorter side → resize, then centre crop
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        if new != (height, width):
            x = F.interpolate(x, size=new, mode="bilinear", antialias=True)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        return x[..., top : top + size, left : left + size]


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def class_name(names: Sequence[str] | None, index: int) -> str:
    """``names[index]``, or the index as text without names."""
    return str(names[index]) if names is not None and 0 <= index < len(names) else str(index)
