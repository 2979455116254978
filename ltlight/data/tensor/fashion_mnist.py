"""Fashion-MNIST-LT: torchvision's ``FashionMNIST`` (6000 images per class), long-tailed.

Without a network the real files come from Debian/Ubuntu: ``apt-get install dataset-fashion-mnist``
puts the four gzipped IDX files in ``/usr/share/datasets/fashion-mnist/``. When ``data_dir`` lacks
the dataset but that folder has it, the files are decompressed into the layout torchvision reads
(``<data_dir>/FashionMNIST/raw/``) instead of downloading; the Debian archive's gzip files differ
from the download's checksums, their contents are the same.

Augmentation for 28×28: random crop with 2-pixel zero padding and horizontal flip. Two pixels is
the same relative shift as CIFAR's 4 of 32 would be for the object (the clothes fill the frame),
and a garment mirrored left-right is still the same garment.
"""

import gzip
import os
import shutil
import tempfile
from typing import Any, ClassVar

from torch import Tensor
from torchvision.datasets import FashionMNIST

from ltlight.data.tensor.datamodule import LongTailDataModule

SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


class FashionMNISTLTDataModule(LongTailDataModule):
    """Fashion-MNIST-LT: 10 classes, 28×28 grey; the whole balanced test split validates.

    Args:
        data_dir: torchvision's ``root``: the folder that holds (or receives) ``FashionMNIST/raw``.
        download: download the dataset in ``prepare_data`` if neither ``data_dir`` nor the
            Debian package's folder has it.
        **kwargs: every argument of
            :class:`~ltlight.data.tensor.datamodule.LongTailDataModule`, by name:
            ``imbalance_ratio``, ``profile``, ``step_fraction``, ``batch_size``,
            ``eval_batch_size``, ``seed``, ``augment`` (random crop with padding 2 and
            horizontal flip), ``val_per_class`` (of the 6,000 images per class; 0: the test
            split validates, the papers' protocol).
    """

    name = "Fashion-MNIST"
    num_classes = 10
    in_channels = 1
    image_size = 28
    max_count = 6000
    mean = (0.2860,)
    std = (0.3530,)
    crop_padding = 2
    class_names = tuple(FashionMNIST.classes)
    #: Where ``apt-get install dataset-fashion-mnist`` puts the gzipped IDX files.
    system_dir: ClassVar[str] = SYSTEM_DIR

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.data_dir, FashionMNIST.__name__, "raw")

    def prepare_data(self) -> None:
        if not self._install_system_copy() and self.download:
            FashionMNIST(self.data_dir, train=False, download=True)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        self._install_system_copy()
        try:
            dataset = FashionMNIST(self.data_dir, train=train, download=False)
        except RuntimeError as error:
            raise FileNotFoundError(
                f"{self.name} not found: looked in {os.path.abspath(self.raw_folder)} and in "
                f"{self.system_dir}. Set download=True (prepare_data(), which Trainer calls, then "
                f"downloads it into data_dir={self.data_dir!r}), or install the files offline with "
                "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)."
            ) from error
        return dataset.data.unsqueeze(1).contiguous(), dataset.targets.long()

    def _install_system_copy(self) -> bool:
        """Decompress the Debian package's files into ``raw_folder`` if that lacks any of them.

        Returns whether ``raw_folder`` holds all four files afterwards. Each file is written under
        a temporary name and renamed, so ranks that race here never read half a file.
        """
        names = [os.path.splitext(filename)[0] for filename, _ in FashionMNIST.resources]
        missing = [n for n in names if not os.path.isfile(os.path.join(self.raw_folder, n))]
        if not missing:
            return True
        sources = {n: os.path.join(self.system_dir, n + ".gz") for n in missing}
        if not all(os.path.isfile(source) for source in sources.values()):
            return False
        os.makedirs(self.raw_folder, exist_ok=True)
        for name, source in sources.items():
            handle, partial = tempfile.mkstemp(dir=self.raw_folder, prefix=f".{name}.")
            try:
                with gzip.open(source, "rb") as compressed, os.fdopen(handle, "wb") as out:
                    shutil.copyfileobj(compressed, out, length=1 << 20)
                os.replace(partial, os.path.join(self.raw_folder, name))
            finally:
                if os.path.exists(partial):
                    os.remove(partial)
        return True
