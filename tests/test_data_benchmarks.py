"""ImageNet-LT, Places-LT and iNaturalist 2018 on fixtures in their exact formats (1,000 / 365 /
8,142 classes, the real file names and layouts; see ``fake_datasets.py``)."""

import os

import pytest
import torch
from fake_datasets import (
    FAKE_HEAD,
    imagenet_wnid,
    inat_train_count,
    places_category,
    read_code,
    train_count,
    write_imagenet_lt,
    write_inaturalist2018,
    write_places_lt,
)

from ltlight.data import ImageNetLTDataModule, INaturalist2018DataModule, PlacesLTDataModule

SMALL = dict(num_workers=0, batch_size=8, image_size=16, resize=20)


@pytest.fixture(scope="session")
def imagenet_lt(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_lt")
    write_imagenet_lt(str(root / "images"), str(root / "splits"))
    return root


@pytest.fixture(scope="session")
def imagenet_lt_flat(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_lt_flat")
    write_imagenet_lt(str(root / "images"), str(root / "splits"), flat_test=True)
    return root


def expected_counts(num_classes):
    return [train_count(c) for c in range(num_classes)]


@pytest.mark.parametrize("layout", ["imagenet_lt", "imagenet_lt_flat"])
def test_imagenet_lt_reads_both_test_layouts(layout, request):
    root = request.getfixturevalue(layout)
    data = ImageNetLTDataModule(str(root / "images"), split_dir=str(root / "splits"), **SMALL)
    assert data.num_classes == 1000 and data.class_counts == expected_counts(1000)
    assert data.class_names[:2] == ["n01440764", imagenet_wnid(1)]
    assert len(data.splits["val"]) == len(data.splits["test"]) == 1000
    assert not data.validates_on_test
    test = data.splits["test"]
    assert os.path.isfile(test.full_path(999))
    assert ("/n" in test.paths[0]) == (layout == "imagenet_lt")
    images, labels = next(iter(data.test_dataloader()))
    assert [read_code(x)[0] for x in (images * 0.229 + 0.485).mul(255).numpy()] == [
        label % 32 for label in labels.tolist()
    ]


def test_imagenet_lt_split_files_default_to_the_image_root(tmp_path):
    write_imagenet_lt(str(tmp_path), str(tmp_path))
    data = ImageNetLTDataModule(str(tmp_path), **SMALL)
    assert sum(data.class_counts) == sum(FAKE_HEAD) + 1000 - len(FAKE_HEAD)


def test_imagenet_lt_without_a_val_file_carves_one_or_validates_on_test(imagenet_lt, tmp_path):
    for split in ("train", "test"):
        os.link(
            imagenet_lt / "splits" / f"ImageNet_LT_{split}.txt",
            tmp_path / f"ImageNet_LT_{split}.txt",
        )
    data = ImageNetLTDataModule(str(imagenet_lt / "images"), split_dir=str(tmp_path), **SMALL)
    assert data.validates_on_test and data.splits["val"] is None
    with pytest.raises(
        ValueError, match=r"val_per_class = 1 leaves no training image of class 'n01"
    ):
        _ = ImageNetLTDataModule(
            str(imagenet_lt / "images"), split_dir=str(tmp_path), val_per_class=1, **SMALL
        ).class_counts


def test_places_lt_has_365_categories_named_by_folder(tmp_path):
    write_places_lt(str(tmp_path / "places"), str(tmp_path / "splits"))
    data = PlacesLTDataModule(str(tmp_path / "places"), split_dir=str(tmp_path / "splits"), **SMALL)
    assert data.num_classes == 365 and data.class_counts == expected_counts(365)
    assert data.class_names[0] == places_category(0) == "a/scene_000"
    assert data.splits["test"].paths[0] == "val_256/Places365_val_00000001.jpg"
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (8, 3, 16, 16) and labels.max() < 365


def test_inaturalist_2018_val_is_the_test_split_and_categories_are_sorted_by_id(tmp_path):
    write_inaturalist2018(str(tmp_path))
    data = INaturalist2018DataModule(str(tmp_path), **SMALL)
    assert data.num_classes == 8142
    assert data.class_counts == [inat_train_count(c) for c in range(8142)]
    assert data.class_names[:2] == ["species_0", "species_1"]
    assert data.splits["val"] is None and len(data.splits["test"]) == 8142
    assert data.validates_on_test
    assert torch.equal(data.splits["test"].labels, torch.arange(8142))
    _, labels = next(iter(data.val_dataloader()))  # the papers' protocol: val2018
    assert labels.tolist() == list(range(8))


def test_imagenet_lt_flat_split_file_finds_images_in_class_folders(imagenet_lt, tmp_path):
    splits = imagenet_lt / "splits"
    os.link(splits / "ImageNet_LT_train.txt", tmp_path / "ImageNet_LT_train.txt")
    lines = (splits / "ImageNet_LT_test.txt").read_text().splitlines()
    flat = [line.replace(line.split("/")[1] + "/", "", 1) for line in lines]
    assert flat[0] == "val/ILSVRC2012_val_00000001.JPEG 0"
    (tmp_path / "ImageNet_LT_test.txt").write_text("\n".join(flat))
    data = ImageNetLTDataModule(str(imagenet_lt / "images"), split_dir=str(tmp_path), **SMALL)
    assert data.splits["test"].paths[0] == "val/n01440764/ILSVRC2012_val_00000001.JPEG"
