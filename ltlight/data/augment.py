"""Batch-level augmentation on the training device: random crop with zero padding, flip, normalise.

The whole batch is transformed by a few tensor operations, with no per-sample Python and no PIL
(the approach of Keller Jordan's ``airbench``). :func:`crop_flip` is the deterministic core: it
pads once and gathers every sample's window — flipped or not — through per-sample index maps;
:func:`random_crop_flip` draws the offsets and flips from a ``torch.Generator`` that the caller
seeds, so the random numbers are a pure function of that seed. The result equals torchvision's
``RandomCrop(size, padding=p) + RandomHorizontalFlip()`` applied sample by sample (zero fill).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def crop_flip(images: Tensor, padding: int, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """Crop every image of a batch from its zero-padded copy and mirror the chosen ones.

    Args:
        images: ``(B, C, H, W)`` batch, any dtype (uint8 stays uint8).
        padding: zero padding ``p`` ≥ 0 on each side before cropping back to ``H × W``.
        top: ``(B,)`` integer row offsets in ``[0, 2p]`` into the padded image.
        left: ``(B,)`` integer column offsets in ``[0, 2p]``.
        flip: ``(B,)`` bool, ``True`` mirrors that crop left-right.

    Returns:
        ``(B, C, H, W)``, same dtype and device: sample ``b`` is
        ``pad(images[b])[:, top_b : top_b + H, left_b : left_b + W]``, mirrored where ``flip[b]``.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    rows = top.view(batch, 1) + torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device).expand(batch, width)
    columns = torch.where(flip.view(batch, 1), width - 1 - columns, columns) + left.view(batch, 1)
    # Two gathers with broadcast (stride-0) index maps: rows first, then columns.
    out = padded.gather(2, rows.view(batch, 1, height, 1).expand(-1, channels, -1, padded.shape[3]))
    return out.gather(3, columns.view(batch, 1, 1, width).expand(-1, channels, height, -1))


def random_crop_flip(
    images: Tensor, padding: int, generator: torch.Generator, flip: bool = True
) -> Tensor:
    """Random crop (zero padding ``padding``) and, if ``flip``, a random horizontal flip (p = 0.5).

    Offsets are uniform in ``[0, 2·padding]``; all random numbers come from ``generator``, which
    must live on ``images.device``.
    """
    batch = images.shape[0]
    device = images.device
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=device)
    if flip:
        mirror = torch.randint(0, 2, (batch,), generator=generator, device=device).bool()
    else:
        mirror = torch.zeros(batch, dtype=torch.bool, device=device)
    return crop_flip(images, padding, top, left, mirror)


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


def _grayscale(images: Tensor) -> Tensor:
    """Luma ``0.2989 R + 0.587 G + 0.114 B`` (torchvision's weights) of ``(B, 3, H, W)``, 4-D."""
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def color_jitter_with(
    images: Tensor, factors: Tensor, order: Tensor, maximum: float = 1.0
) -> Tensor:
    """Brightness, contrast and saturation with given per-image factors, in a per-image order.

    The deterministic core of :func:`color_jitter`, written as torchvision's
    ``adjust_brightness`` / ``adjust_contrast`` / ``adjust_saturation`` on float images in [0, 1]:
    brightness ``x·f``; contrast ``f·x + (1−f)·mean(gray(x))``; saturation
    ``f·x + (1−f)·gray(x)``; each clamped to ``[0, maximum]``.

    Args:
        images: float ``(B, 3, H, W)`` in ``[0, maximum]``.
        factors: ``(B, 3)`` factors of brightness, contrast, saturation (1 = unchanged).
        order: ``(B, 3)`` a permutation of ``(0, 1, 2)`` per image: the operations' order.
        maximum: the value of white (1 for [0, 1] images, 255 for the uint8 scale).
    """
    out = images
    for step in range(3):
        for operation in range(3):
            chosen = (order[:, step] == operation).view(-1, 1, 1, 1)
            f = factors[:, operation].view(-1, 1, 1, 1)
            if operation == 0:
                changed = out * f
            elif operation == 1:
                mean = _grayscale(out).mean(dim=(1, 2, 3), keepdim=True)
                changed = f * out + (1 - f) * mean
            else:
                changed = f * out + (1 - f) * _grayscale(out)
            out = torch.where(chosen, changed.clamp_(0, maximum), out)
    return out


def color_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """torchvision's ``ColorJitter(brightness=s, contrast=s, saturation=s)`` for a whole batch.

    As Kang et al. (ICLR 2020) use it on ImageNet-LT / Places-LT (``s = 0.4``, no hue): every
    image draws its own factors, uniform in ``[max(0, 1−s), 1+s]``, and its own order of the three
    operations (torchvision permutes them per call too). All random numbers come from
    ``generator`` (on ``images.device``), so a batch's jitter is a pure function of its seed.

    Args:
        images: uint8 ``(B, 3, H, W)``.
        strength: ``s`` ≥ 0; 0 returns the images as float unchanged.

    Returns:
        float32 ``(B, 3, H, W)`` on the uint8 scale [0, 255] (what :class:`Normalize` takes).
    """
    out = images.float()
    if strength == 0 or len(images) == 0:
        return out
    batch, device = images.shape[0], images.device
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    factors = torch.rand(batch, 3, generator=generator, device=device) * (high - low) + low
    order = torch.rand(batch, 3, generator=generator, device=device).argsort(dim=1)
    return color_jitter_with(out, factors, order, maximum=255.0)
