"""Writers of fake datasets in the real on-disk formats, for tests that must not download.

* CIFAR-10 / CIFAR-100: the pickled batches of ``cifar-10-python.tar.gz`` /
  ``cifar-100-python.tar.gz`` after extraction (``cifar-10-batches-py/data_batch_1`` ...), read by
  torchvision's own ``CIFAR10`` / ``CIFAR100``. Their checksums differ from the real files', so a
  test patches ``torchvision.datasets.cifar.check_integrity`` as torchvision's own dataset tests
  do (:func:`patch_cifar_integrity_check`; the ``cifar10_dir`` / ``cifar100_dir`` fixtures in
  ``conftest.py`` do it for you).
* Fashion-MNIST: the IDX files, either as torchvision lays them out
  (``<root>/FashionMNIST/raw/train-images-idx3-ubyte`` ...) or gzipped in one flat folder as the
  Debian package ``dataset-fashion-mnist`` installs them.

Every image encodes where it came from, so a test can follow it through a pipeline: all pixels of
channel 0 hold the label, channel 1 ``index % 256`` and channel 2 ``index // 256`` (index within
its split). Greyscale images hold only the label. A random crop with padding ``p`` keeps the
centre pixel, and normalisation can be undone, so the label survives augmentation.
The default sizes are the real ones (5000 / 500 / 6000 images per class), so the datamodules'
long-tail counts apply unchanged.
"""

import gzip
import os
import pickle
import struct

import numpy as np
import pytest


def encoded_images(labels: np.ndarray, channels: int, size: int) -> np.ndarray:
    """``(N, channels, size, size)`` uint8 images whose pixels encode ``(label, index)``."""
    n = len(labels)
    index = np.arange(n)
    codes = [labels, index % 256, index // 256][:channels]
    planes = np.stack(codes, axis=1).astype(np.uint8)
    shape = (n, channels, size, size)
    return np.ascontiguousarray(np.broadcast_to(planes[:, :, None, None], shape))


def balanced_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` labels of every class in a seeded random order (int64)."""
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


def _pickle(path: str, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def write_cifar10(root: str, train_per_class: int = 5000, test_per_class: int = 1000) -> str:
    """Write ``<root>/cifar-10-batches-py``: 5 training batches, test batch, ``batches.meta``."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    _pickle(os.path.join(folder, "batches.meta"), {"label_names": [*names, "truck"]})
    train_labels = balanced_labels(10, train_per_class, seed=1)
    train_images = encoded_images(train_labels, 3, 32).reshape(len(train_labels), -1)
    for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5)):
        _pickle(
            os.path.join(folder, f"data_batch_{i + 1}"),
            {
                "batch_label": f"training batch {i + 1} of 5",
                "labels": train_labels[part].tolist(),
                "data": train_images[part],
                "filenames": [f"{j}.png" for j in part],
            },
        )
    test_labels = balanced_labels(10, test_per_class, seed=2)
    _pickle(
        os.path.join(folder, "test_batch"),
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": encoded_images(test_labels, 3, 32).reshape(len(test_labels), -1),
            "filenames": [f"{j}.png" for j in range(len(test_labels))],
        },
    )
    return root


def write_cifar100(root: str, train_per_class: int = 500, test_per_class: int = 100) -> str:
    """Write ``<root>/cifar-100-python`` (``train``, ``test``, ``meta``)."""
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    _pickle(
        os.path.join(folder, "meta"),
        {
            "fine_label_names": [f"class_{c}" for c in range(100)],
            "coarse_label_names": [f"superclass_{c}" for c in range(20)],
        },
    )
    for split, per_class, seed in (("train", train_per_class, 3), ("test", test_per_class, 4)):
        labels = balanced_labels(100, per_class, seed=seed)
        _pickle(
            os.path.join(folder, split),
            {
                "filenames": [f"{j}.png" for j in range(len(labels))],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
                "data": encoded_images(labels, 3, 32).reshape(len(labels), -1),
            },
        )
    return root


def _idx_bytes(array: np.ndarray) -> bytes:
    # IDX: two zero bytes, type 0x08 (uint8), the number of dimensions, big-endian sizes, data.
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(
    folder: str, train_per_class: int = 6000, test_per_class: int = 1000, gzipped: bool = False
) -> str:
    """Write the four Fashion-MNIST IDX files into ``folder`` (``.gz`` if ``gzipped``)."""
    os.makedirs(folder, exist_ok=True)
    for prefix, per_class, seed in (("train", train_per_class, 5), ("t10k", test_per_class, 6)):
        labels = balanced_labels(10, per_class, seed=seed)
        images = encoded_images(labels, 1, 28)[:, 0]
        files = {f"{prefix}-images-idx3-ubyte": images, f"{prefix}-labels-idx1-ubyte": labels}
        for name, array in files.items():
            path = os.path.join(folder, name + (".gz" if gzipped else ""))
            opener = gzip.open if gzipped else open
            with opener(path, "wb") as f:
                f.write(_idx_bytes(array))
    return folder


def patch_cifar_integrity_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept the fake CIFAR files: the checksum check becomes "the file exists".

    torchvision's own dataset tests patch ``check_integrity`` / ``check_md5`` in the dataset's
    module the same way; keeping the existence check lets missing-dataset errors still happen.
    """
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


# -- image files ------------------------------------------------------------------------------
# A code colour per (label, index): channel 0 holds 8·label + 4, channels 1-2 the index in base 32
# times 8 plus 4. JPEG keeps a flat colour to within ±2, so `read_code` recovers it after any crop,
# resize and flip (colour jitter off).


def code_colour(label: int, index: int) -> tuple[int, int, int]:
    return (8 * label + 4, 8 * (index % 32) + 4, 8 * (index // 32) + 4)


def read_code(pixels: np.ndarray) -> tuple[int, int]:
    """``(label, index)`` from the mean colour of an image (``(3, H, W)`` or ``(H, W, 3)``)."""
    mean = pixels.reshape(3, -1).mean(1) if pixels.shape[0] == 3 else pixels.mean((0, 1))
    label, low, high = (int(v) // 8 for v in mean)
    return label, low + 32 * high


def write_jpeg(path: str, colour: tuple[int, int, int], size: tuple[int, int] = (50, 40)) -> None:
    """A flat-colour ``size`` (width, height) JPEG at ``path`` (folders created)."""
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)


def write_image_folder(
    root: str, counts: dict[str, int], size: tuple[int, int] = (50, 40), first_index: int = 0
) -> str:
    """``root/<class>/<class>_<i>.jpg``: ``counts[class]`` images per class, in name order.

    Image ``k`` (counting over all classes in sorted order from ``first_index``) has the colour
    ``code_colour(label, k)``; returns ``root``.
    """
    index = first_index
    for label, name in enumerate(sorted(counts)):
        for i in range(counts[name]):
            write_jpeg(
                os.path.join(root, name, f"{name}_{i:04d}.jpg"), code_colour(label, index), size
            )
            index += 1
    return root


# -- the standard long-tail benchmarks, in their exact on-disk formats ----------------------
# Images are tiny JPEGs (shared bytes per class colour, so thousands of files write in seconds);
# the class counts are the real ones' shape: class c has FAKE_HEAD[c] training images, 1 if
# c >= len(FAKE_HEAD). Labels encode the class in channel 0 as above (mod 32).

FAKE_HEAD = (6, 4, 3, 2)


def _jpeg_bytes(label: int, cache: dict = {}) -> bytes:  # noqa: B006 - a deliberate memo
    from io import BytesIO

    from PIL import Image

    key = label % 32
    if key not in cache:
        buffer = BytesIO()
        Image.new("RGB", (48, 36), code_colour(key, 0)).save(buffer, "JPEG", quality=95)
        cache[key] = buffer.getvalue()
    return cache[key]


def _write(root: str, relpath: str, label: int) -> None:
    path = os.path.join(root, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(_jpeg_bytes(label))


def train_count(label: int) -> int:
    return FAKE_HEAD[label] if label < len(FAKE_HEAD) else 1


def inat_train_count(label: int) -> int:
    """iNaturalist 2018's rarest species have 2 training images (not 1): one can be validation."""
    return max(2, train_count(label))


def imagenet_wnid(label: int) -> str:
    """A WordNet id shaped like ImageNet's (``n01440764`` is class 0, tench, as in ImageNet)."""
    return f"n{1440764 + 1000 * label:08d}"


def write_imagenet_lt(root: str, split_dir: str, flat_test: bool = False) -> None:
    """ImageNet-LT: ``ImageNet_LT_{train,val,test}.txt`` in ``split_dir``, images under ``root``.

    Train and val (one per class, carved from ImageNet's train as the real val is) list
    ``train/<wnid>/<wnid>_<n>.JPEG``; test lists ``val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG``
    (one per class). ``flat_test`` stores the test images as ILSVRC2012's val tar extracts them,
    ``val/ILSVRC2012_val_<8 digits>.JPEG``, while the split file keeps the class folders.
    """
    os.makedirs(split_dir, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in range(1000):
        wnid = imagenet_wnid(label)
        for i in range(train_count(label) + 1):
            relpath = f"train/{wnid}/{wnid}_{10026 + i}.JPEG"
            _write(root, relpath, label)
            lines["val" if i == 0 else "train"].append(f"{relpath} {label}")
        file = f"ILSVRC2012_val_{label + 1:08d}.JPEG"
        lines["test"].append(f"val/{wnid}/{file} {label}")
        _write(root, f"val/{file}" if flat_test else f"val/{wnid}/{file}", label)
    for split, split_lines in lines.items():
        with open(os.path.join(split_dir, f"ImageNet_LT_{split}.txt"), "w") as f:
            f.write("\n".join(split_lines) + "\n")


def places_category(label: int) -> str:
    return f"{chr(ord('a') + label % 26)}/scene_{label:03d}"


def write_places_lt(root: str, split_dir: str) -> None:
    """Places-LT: ``Places_LT_{train,val,test}.txt``, 365 classes, Places365-Standard paths.

    Train and val list ``data_256/<letter>/<category>/<8 digits>.jpg``; test lists
    ``val_256/Places365_val_<8 digits>.jpg`` (flat, as Places365's val set is).
    """
    os.makedirs(split_dir, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label in range(365):
        for i in range(train_count(label) + 1):
            relpath = f"data_256/{places_category(label)}/{i + 1:08d}.jpg"
            _write(root, relpath, label)
            lines["val" if i == 0 else "train"].append(f"{relpath} {label}")
        relpath = f"val_256/Places365_val_{label + 1:08d}.jpg"
        _write(root, relpath, label)
        lines["test"].append(f"{relpath} {label}")
    for split, split_lines in lines.items():
        with open(os.path.join(split_dir, f"Places_LT_{split}.txt"), "w") as f:
            f.write("\n".join(split_lines) + "\n")


def write_inaturalist2018(root: str) -> None:
    """iNaturalist 2018: ``train2018.json`` / ``val2018.json`` (COCO style), 8,142 categories.

    Images under ``train_val2018/<supercategory>/<category id>/<hex>.jpg`` as in the real
    archive; categories are listed in a shuffled id order (the reader sorts them by id).
    """
    import json

    supercategories = ["Plantae", "Insecta", "Aves", "Reptilia", "Mammalia", "Fungi"]
    ids = np.random.default_rng(0).permutation(8142).tolist()
    categories = [
        {"id": i, "name": f"species_{i}", "supercategory": supercategories[i % 6]} for i in ids
    ]
    for split, per_class in (("train", inat_train_count), ("val", lambda label: 1)):
        images, annotations = [], []
        for label in range(8142):
            for _ in range(per_class(label)):
                image_id = len(images) + (0 if split == "train" else 10**6)
                file = f"train_val2018/{supercategories[label % 6]}/{label}/{image_id:032x}.jpg"
                _write(root, file, label)
                images.append({"id": image_id, "file_name": file, "width": 48, "height": 36})
                annotations.append({"id": image_id, "image_id": image_id, "category_id": label})
        data = {"images": images, "annotations": annotations, "categories": categories}
        with open(os.path.join(root, f"{split}2018.json"), "w") as f:
            json.dump(data, f)
