"""Batch-level augmentation on the training device: random crop with zero padding and flip.

The whole batch is transformed by a few tensor operations, with no per-sample Python and no PIL
(the approach of Keller Jordan's ``airbench``). :func:`crop_flip` is the deterministic core: it
pads once and gathers every sample's window — flipped or not — through per-sample index maps;
:func:`random_crop_flip` draws the offsets and flips from a ``torch.Generator`` that the caller
seeds, so the random numbers are a pure function of that seed. The result equals torchvision's
``RandomCrop(size, padding=p) + RandomHorizontalFlip()`` applied sample by sample (zero fill).
"""

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
