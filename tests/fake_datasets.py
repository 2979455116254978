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
