"""Batch-level crop / flip / normalisation against a per-sample reference."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from ltlight.data import Normalize, crop_flip, random_crop_flip


def reference_crop_flip(image, padding, top, left, flip):
    """One image at a time: zero-pad, slice the window, mirror — torchvision's RandomCrop/Flip."""
    height, width = image.shape[-2:]
    window = F.pad(image, (padding,) * 4)[:, top : top + height, left : left + width]
    return window.flip(-1) if flip else window


def random_batch(batch=16, channels=3, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, channels, size, size), generator=generator).to(torch.uint8)


@pytest.mark.parametrize(("padding", "size", "channels"), [(4, 32, 3), (2, 28, 1), (1, 8, 1)])
def test_batch_crop_flip_equals_per_sample_reference(padding, size, channels):
    images = random_batch(64, channels, size)
    generator = torch.Generator().manual_seed(1)
    top = torch.randint(0, 2 * padding + 1, (64,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (64,), generator=generator)
    flip = torch.rand(64, generator=generator) < 0.5
    expected = torch.stack(
        [reference_crop_flip(images[b], padding, top[b], left[b], flip[b]) for b in range(64)]
    )
    out = crop_flip(images, padding, top, left, flip)
    assert out.dtype == torch.uint8
    assert torch.equal(out, expected)


def test_extreme_offsets_show_the_zero_padding():
    images = torch.full((2, 1, 6, 6), 9, dtype=torch.uint8)
    out = crop_flip(
        images, 2, torch.tensor([0, 4]), torch.tensor([0, 4]), torch.tensor([0, 0]).bool()
    )
    assert out[0, 0, :2].eq(0).all() and out[0, 0, :, :2].eq(0).all()  # shifted down-right
    assert out[0, 0, 2:, 2:].eq(9).all()
    assert out[1, 0, 4:].eq(0).all() and out[1, 0, :, 4:].eq(0).all()  # shifted up-left
    assert out[1, 0, :4, :4].eq(9).all()


def test_random_crop_stays_inside_the_padded_image_and_flip_is_a_flip():
    """Every output is one of the (2p + 1)² windows of the padded input, mirrored or not."""
    padding, images = 4, random_batch(32)
    out = random_crop_flip(images, padding, torch.Generator().manual_seed(2))
    seen_offsets, seen_flips = set(), set()
    for b in range(len(images)):
        matches = [
            (top, left, flip)
            for top in range(2 * padding + 1)
            for left in range(2 * padding + 1)
            for flip in (False, True)
            if torch.equal(out[b], reference_crop_flip(images[b], padding, top, left, flip))
        ]
        assert len(matches) == 1, f"sample {b} is not exactly one crop of its padded image"
        seen_offsets.add(matches[0][:2])
        seen_flips.add(matches[0][2])
    assert seen_flips == {False, True}
    assert len(seen_offsets) > 10  # offsets vary across the batch


def test_offsets_are_uniform_over_the_whole_range_and_half_are_flipped():
    padding, size, batch = 4, 17, 20000
    # Channel 0 holds row + 1, channel 1 column + 1 (0 is padding): a pixel tells where it was.
    rows, columns = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.stack([rows, columns]).add(1).to(torch.uint8).expand(batch, 2, size, size)
    out = random_crop_flip(images.contiguous(), padding, torch.Generator().manual_seed(3)).long()
    centre = size // 2  # output centre = image (top + centre - p, left + centre - p), flip or not
    top = out[:, 0, centre, centre] - 1 - centre + padding
    left = out[:, 1, centre, centre] - 1 - centre + padding
    flipped = out[:, 1, centre, centre + 1] < out[:, 1, centre, centre]
    for offsets in (top, left):
        counts = torch.bincount(offsets, minlength=2 * padding + 1)
        assert len(counts) == 2 * padding + 1  # never outside [0, 2p]
        expected = batch / (2 * padding + 1)
        assert counts.min() > 0.9 * expected and counts.max() < 1.1 * expected
    assert 0.48 < flipped.float().mean() < 0.52


def test_same_generator_seed_same_augmentation():
    images = random_batch(32)
    a = random_crop_flip(images, 4, torch.Generator().manual_seed(5))
    b = random_crop_flip(images, 4, torch.Generator().manual_seed(5))
    c = random_crop_flip(images, 4, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_no_flip_keeps_orientation():
    images = random_batch(32)
    out = random_crop_flip(images, 0, torch.Generator().manual_seed(0), flip=False)
    assert torch.equal(out, images)


def test_normalize_equals_torchvision_to_float_then_normalize():
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    images = random_batch(8)
    expected = v2.Normalize(mean, std)(v2.ToDtype(torch.float32, scale=True)(images))
    out = Normalize(mean, std)(images)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_normalize_rejects_non_positive_std():
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize((0.5,), (0.0,))
