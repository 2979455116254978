"""Shared fixtures: fake datasets in the real on-disk formats (see ``tests/fake_datasets.py``).

The files are written once per test session into temporary folders. ``cifar10_dir`` and
``cifar100_dir`` also patch torchvision's checksum check for the test that uses them, so
``CIFAR10LTDataModule(data_dir=cifar10_dir, download=False)`` works as on the real files.
``fashion_mnist_dir`` holds ``FashionMNIST/raw/`` as torchvision lays it out;
``fashion_mnist_system_dir`` the gzipped files as ``apt-get install dataset-fashion-mnist`` does.
(``tests/`` is not a package: pytest puts it on ``sys.path``, so tests import ``fake_datasets``.)
"""

import os

import pytest
from fake_datasets import (
    patch_cifar_integrity_check,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_image_folder,
    write_imagenet_lt,
    write_inaturalist2018,
    write_places_lt,
)


@pytest.fixture(scope="session")
def _cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_cifar10(str(tmp_path_factory.mktemp("cifar10")))


@pytest.fixture(scope="session")
def _cifar100_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_cifar100(str(tmp_path_factory.mktemp("cifar100")))


@pytest.fixture
def cifar10_dir(_cifar10_root: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``data_dir`` with a full-size fake CIFAR-10 (5000 / 1000 images per class)."""
    patch_cifar_integrity_check(monkeypatch)
    return _cifar10_root


@pytest.fixture
def cifar100_dir(_cifar100_root: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``data_dir`` with a full-size fake CIFAR-100 (500 / 100 images per class)."""
    patch_cifar_integrity_check(monkeypatch)
    return _cifar100_root


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``data_dir`` with a full-size fake Fashion-MNIST in ``FashionMNIST/raw/``."""
    root = tmp_path_factory.mktemp("fashion_mnist")
    write_fashion_mnist(str(root / "FashionMNIST" / "raw"))
    return str(root)


@pytest.fixture(scope="session")
def fashion_mnist_system_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder with the four gzipped IDX files, laid out like the Debian package's."""
    return write_fashion_mnist(str(tmp_path_factory.mktemp("fashion_mnist_deb")), gzipped=True)


# -- image-file datasets in their exact formats (``fake_datasets.py``) --------------------------
@pytest.fixture(scope="session")
def imagenet_lt_dir(tmp_path_factory: pytest.TempPathFactory):
    """``images/`` (ILSVRC2012 layout) and ``splits/ImageNet_LT_{train,val,test}.txt``."""
    root = tmp_path_factory.mktemp("imagenet_lt")
    write_imagenet_lt(str(root / "images"), str(root / "splits"))
    return root


@pytest.fixture(scope="session")
def places_lt_dir(tmp_path_factory: pytest.TempPathFactory):
    """``images/`` (Places365 layout) and ``splits/Places_LT_{train,val,test}.txt``."""
    root = tmp_path_factory.mktemp("places_lt")
    write_places_lt(str(root / "images"), str(root / "splits"))
    return root


@pytest.fixture(scope="session")
def inat2018_dir(tmp_path_factory: pytest.TempPathFactory):
    """``train2018.json``, ``val2018.json`` and ``train_val2018/`` with 8,142 categories."""
    root = tmp_path_factory.mktemp("inat2018")
    write_inaturalist2018(str(root))
    return root


#: The class folders of ``image_folder_dir``: 10 classes, long-tailed, as ``configs/folder``.
FOLDER_COUNTS = {f"class_{c}": n for c, n in enumerate([8, 6, 5, 4, 4, 3, 3, 3, 3, 3])}


@pytest.fixture(scope="session")
def image_folder_dir(tmp_path_factory: pytest.TempPathFactory):
    """``train/<class>/`` (``FOLDER_COUNTS``) and ``test/<class>/`` (2 per class) JPEGs."""
    root = tmp_path_factory.mktemp("image_folder")
    write_image_folder(str(root / "train"), FOLDER_COUNTS)
    write_image_folder(str(root / "test"), dict.fromkeys(FOLDER_COUNTS, 2), first_index=100)
    return root


@pytest.fixture(scope="session")
def multilabel_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The multi-label datasets' fixtures (``tests/fake_multilabel.py``), every class positive:
    ``voc_mlt`` (a VOCdevkit), ``coco_mlt``, ``chestxray14``, ``folder_multilabel`` (CSVs)."""
    from fake_multilabel import (
        write_chestxray14,
        write_coco_mlt,
        write_multilabel_csvs,
        write_voc_mlt,
    )

    root = tmp_path_factory.mktemp("multilabel")
    return {
        "voc_mlt": write_voc_mlt(str(root / "VOCdevkit"), complete=True),
        "coco_mlt": write_coco_mlt(str(root / "coco"), complete=True),
        "chestxray14": write_chestxray14(str(root / "chestxray14")),
        "folder_multilabel": os.path.dirname(write_multilabel_csvs(str(root / "own"))["train"]),
    }


#: timm's ``vit_tiny_patch16_224`` width: the tests' stand-in for LIFT's CLIP ViT-B/16.
TINY_VIT_WIDTH = 192


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """``(open_clip model name, weights file)`` of a tiny CLIP whose image tower is as wide as
    ``vit_tiny_patch16_224`` (``tests/fake_clip.py``): LIFT's text-initialised head offline."""
    from fake_clip import write_tiny_clip

    name = "ltlight-test-clip-vit-tiny"
    folder = str(tmp_path_factory.mktemp("clip"))
    return name, write_tiny_clip(folder, name, TINY_VIT_WIDTH)
