"""``cap_val_per_class``: the folder recipe's ``val_per_class: 20`` on a truly long-tailed set."""

import numpy as np
import pytest
import torch
from PIL import Image

from ltlight.data import ImageFolderLTDataModule


def write_folder(root, counts):
    for label, count in enumerate(counts):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(count):
            pixels = np.full((8, 8, 3), 10 * label + index, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.png")
    return str(root)


def test_val_per_class_is_capped_at_half_the_rarest_class_saying_so(tmp_path):
    train = write_folder(tmp_path / "train", [12, 6, 5])
    data = ImageFolderLTDataModule(train=train, val_per_class=20, cap_val_per_class=True)
    with pytest.warns(UserWarning, match=r"val_per_class 20 capped to 2 .*rarest class 'class2'"):
        splits = data.splits
    assert torch.bincount(splits["val"].labels).tolist() == [2, 2, 2]
    assert data.class_counts == [10, 4, 3]
    train_files, val_files = set(splits["train"].paths), set(splits["val"].paths)
    assert not train_files & val_files and len(train_files | val_files) == 23


def test_without_the_cap_or_below_it_val_per_class_is_taken_as_given(tmp_path):
    train = write_folder(tmp_path / "train", [12, 6, 5])
    capped = ImageFolderLTDataModule(train=train, val_per_class=2, cap_val_per_class=True)
    assert torch.bincount(capped.splits["val"].labels).tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match="val_per_class = 20 leaves no training image"):
        ImageFolderLTDataModule(train=train, val_per_class=20).splits  # noqa: B018


def test_a_class_of_one_image_leaves_nothing_to_carve_and_says_what_to_do(tmp_path):
    train = write_folder(tmp_path / "train", [4, 1])
    data = ImageFolderLTDataModule(train=train, val_per_class=20, cap_val_per_class=True)
    with pytest.raises(ValueError, match=r"'class1' has 1 training image.*val_per_class=0"):
        data.splits  # noqa: B018
