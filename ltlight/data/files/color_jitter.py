"""Colour jitter for a whole batch in one pass: torchvision's ``ColorJitter`` as an affine map.

Brightness, contrast and saturation — the jitter of Kang et al. (ICLR 2020) on ImageNet-LT and
Places-LT, ``ColorJitter(0.4, 0.4, 0.4)`` — are each affine in the pixel colour ``x`` (a 3-vector):

* brightness ``f``: ``x ↦ f·x``;
* contrast ``f``: ``x ↦ f·x + (1 − f)·ḡ``, ``ḡ`` the image's mean grey level;
* saturation ``f``: ``x ↦ f·x + (1 − f)·(wᵀx)·1``, ``w = (0.2989, 0.587, 0.114)``.

So any order of the three is one map ``x ↦ A·x + b`` per image (``A`` 3×3, ``b`` a 3-vector),
composed on tiny tensors from the image's mean colour (``ḡ`` after earlier operations is
``wᵀ(A·μ + b)``), then applied to every pixel at once. torchvision clamps to the valid range after
each operation; this clamps once, at the end. The two agree wherever no intermediate value leaves
the range, and differ only on pixels that a brightening first saturates — the price of one pass
over the batch instead of three per-image operations with their intermediate images.
"""

import torch
from torch import Tensor

#: torchvision's grey weights (``rgb_to_grayscale``).
GREY = (0.2989, 0.587, 0.114)


def jitter_matrix(
    mean: list[float], factors: list[float], order: list[int]
) -> tuple[list[list[float]], list[float]]:
    """The affine map ``x ↦ A·x + b`` of one image's jitter, in float64 (plain Python).

    Args:
        mean: the image's mean colour ``μ`` (3 values).
        factors: brightness, contrast, saturation factors (1 = unchanged).
        order: the order of the three operations, a permutation of ``(0, 1, 2)``.
    """
    A = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    b = [0.0, 0.0, 0.0]
    for operation in order:
        f = factors[operation]
        if operation == 0:  # brightness
            M, c = [[f * (i == j) for j in range(3)] for i in range(3)], [0.0] * 3
        elif operation == 1:  # contrast, towards the current mean grey
            current = [sum(A[i][j] * mean[j] for j in range(3)) + b[i] for i in range(3)]
            grey_mean = sum(w * v for w, v in zip(GREY, current, strict=True))
            M, c = [[f * (i == j) for j in range(3)] for i in range(3)], [(1 - f) * grey_mean] * 3
        else:  # saturation, towards the pixel's own grey
            M = [[f * (i == j) + (1 - f) * GREY[j] for j in range(3)] for i in range(3)]
            c = [0.0] * 3
        A = [[sum(M[i][k] * A[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
        b = [sum(M[i][k] * b[k] for k in range(3)) + c[i] for i in range(3)]
    return A, b


def color_jitter_with(
    images: Tensor, factors: Tensor, order: Tensor, maximum: float = 255.0
) -> Tensor:
    """Brightness, contrast and saturation with given per-image factors, in a per-image order.

    Args:
        images: ``(B, 3, H, W)``, uint8 or float, values in ``[0, maximum]``.
        factors: ``(B, 3)`` factors of brightness, contrast, saturation (1 = unchanged).
        order: ``(B, 3)`` a permutation of ``(0, 1, 2)`` per image: the operations' order.
        maximum: the value of white (255 for uint8 images, 1 for [0, 1] floats).

    Returns:
        ``(B, 3, H, W)`` clamped to ``[0, maximum]``: float32 for uint8 input, else its dtype.
    """
    batch = images.shape[0]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    pixels = images.reshape(batch, 3, -1).to(dtype)
    # The 3×3 maps are built on the host from the mean colours (one small transfer per batch).
    means = pixels.mean(dim=2).tolist()
    maps = [
        jitter_matrix(mean, f, o)
        for mean, f, o in zip(means, factors.tolist(), order.tolist(), strict=True)
    ]
    A = torch.tensor([a for a, _ in maps], dtype=dtype).to(images.device, non_blocking=True)
    b = torch.tensor([b for _, b in maps], dtype=dtype).to(images.device, non_blocking=True)
    out = torch.baddbmm(b.unsqueeze(-1), A, pixels)
    return out.view(images.shape).clamp_(0, maximum)


def color_jitter(images: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """torchvision's ``ColorJitter(brightness=s, contrast=s, saturation=s)`` for a whole batch.

    Every image draws its own factors, uniform in ``[max(0, 1 − s), 1 + s]``, and its own order
    of the three operations (torchvision permutes them per call too). All random numbers come
    from ``generator`` (on ``images.device``), so a batch's jitter is a pure function of its seed.

    Args:
        images: ``(B, 3, H, W)`` on the uint8 scale, uint8 or float (a float batch is read,
            not changed: the loader converts into a buffer it reuses).
        strength: ``s`` ≥ 0; 0 returns the images as float unchanged.

    Returns:
        float32 ``(B, 3, H, W)`` on the uint8 scale [0, 255] (what :class:`Normalize` takes).
    """
    if strength == 0 or len(images) == 0:
        return images.float()
    factors, order = draw_jitter(len(images), strength, generator)
    return color_jitter_with(images, factors, order, maximum=255.0)


def draw_jitter(batch: int, strength: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The random numbers of :func:`color_jitter` for ``batch`` images, in its order of draws.

    Returns ``(factors, order)``, each ``(batch, 3)`` on ``generator``'s device: factors uniform in
    ``[max(0, 1 − s), 1 + s]``, and a random permutation of the three operations per image.
    A decoder that jitters elsewhere (DALI's) draws them here and applies
    :func:`color_jitter_with` later: the same numbers, the same map.
    """
    device = generator.device
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    factors = torch.rand(batch, 3, generator=generator, device=device) * (high - low) + low
    order = torch.rand(batch, 3, generator=generator, device=device).argsort(dim=1)
    return factors, order
