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
