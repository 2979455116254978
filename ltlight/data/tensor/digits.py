"""Digits-LT: scikit-learn's bundled 8×8 handwritten digits, long-tailed — the offline default.

1,797 real images (about 180 per class, values 0..16, scaled here to uint8 0..255) are split
once, independently of ``seed``: per class, 50 images of a permutation seeded with 0 form the
balanced test set (500 images), the rest the training pool. The pool is subsampled to the
long-tail profile with ``max_count`` = the smallest per-class pool (124), so the head class keeps
every image it can and all classes start equal. ``imbalance_ratio`` defaults to 10 here: ratio 100
would leave a single image for the rarest class (``int(124 / 100) = 1``).

Augmentation (off by default): a random crop with 1-pixel zero padding and no flip — at 8×8 a
4-pixel shift would cut digits in half, and a mirrored digit is another symbol.
"""

from functools import cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ltlight.data.tensor.datamodule import LongTailDataModule

TEST_PER_CLASS = 50
SPLIT_SEED = 0


@cache
def _digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(train_images, train_labels, test_images, test_labels)`` of the fixed split, on the CPU."""
    from sklearn.datasets import load_digits  # sklearn's import is slow; only pay for it here

    pixels, targets = load_digits(return_X_y=True)
    images = torch.from_numpy(np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)).view(-1, 1, 8, 8)
    labels = torch.from_numpy(targets).long()
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    rank_in_class = torch.empty_like(labels)
    permuted = labels[permutation]
    for c in range(10):  # ten classes, once per process
        members = permutation[permuted == c]
        rank_in_class[members] = torch.arange(len(members))
    test = rank_in_class < TEST_PER_CLASS
    return images[~test], labels[~test], images[test], labels[test]


class DigitsLTDataModule(LongTailDataModule):
    """Digits-LT: 10 classes, 8×8 grey, 500 balanced test images; runs in seconds on a CPU.

    Args:
        imbalance_ratio: ``ρ = n_max / n_min``, in [1, 124] (the head class has 124 images).
        batch_size: training images per batch and rank, ≥ 1.
        augment: random crop with 1-pixel padding of the training batches (no flip).
        **kwargs: every other argument of
            :class:`~ltlight.data.tensor.datamodule.LongTailDataModule`, by name: ``profile``,
            ``step_fraction``, ``eval_batch_size``, ``seed`` (it seeds the long-tailed subset,
            not the fixed test split), ``val_per_class`` (< 124; 0: the test split validates).
    """

    name = "Digits"
    num_classes = 10
    in_channels = 1
    image_size = 8
    mean = (0.3053,)
    std = (0.3759,)
    class_names = tuple("0123456789")
    crop_padding = 1
    flip = False

    def __init__(
        self,
        imbalance_ratio: float = 10.0,
        batch_size: int = 64,
        augment: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            imbalance_ratio=imbalance_ratio, batch_size=batch_size, augment=augment, **kwargs
        )

    @property
    def max_count(self) -> int:
        return int(torch.bincount(_digits_split()[1]).min())

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        train_images, train_labels, test_images, test_labels = _digits_split()
        return (train_images, train_labels) if train else (test_images, test_labels)
