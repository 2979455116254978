"""CIFAR-10-LT and CIFAR-100-LT, built as in LDAM-DRW (Cao et al., NeurIPS 2019).

The training split is torchvision's ``CIFAR10`` / ``CIFAR100`` (its real download path, 5000 / 500
images per class) subsampled to the long-tail profile; the whole balanced test split (1000 / 100
per class) is the validation and test set. Augmentation is the papers': random crop with 4-pixel
zero padding and horizontal flip, then normalisation. The normalisation constants are the ones of
the LDAM-DRW code for CIFAR-10 and the usual CIFAR-100 training-set statistics for CIFAR-100.
"""

import os
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchvision.datasets import CIFAR10, CIFAR100

from ltlight.data.tensor.datamodule import LongTailDataModule


class CIFAR10LTDataModule(LongTailDataModule):
    """CIFAR-10-LT: 10 classes, 32×32 RGB; ``imbalance_ratio=100`` keeps 12,406 training images.

    Args:
        data_dir: torchvision's ``root``, the folder that holds or receives ``cifar-10-batches-py``.
        download: download the dataset in ``prepare_data`` if it is not in ``data_dir``.
        **kwargs: every argument of
            :class:`~ltlight.data.tensor.datamodule.LongTailDataModule`, by name:
            ``imbalance_ratio`` (10, 50, 100 or 200 in the papers), ``profile``,
            ``step_fraction``, ``batch_size`` (128 in the paper), ``eval_batch_size``, ``seed``,
            ``augment`` (random crop with padding 4 and horizontal flip), ``val_per_class``
            (0: the test split validates, the papers' protocol).
    """

    name = "CIFAR-10"
    dataset_class: ClassVar[type[CIFAR10]] = CIFAR10
    num_classes = 10
    in_channels = 3
    image_size = 32
    max_count = 5000
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2023, 0.1994, 0.2010)
    class_names = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def __init__(self, data_dir: str = "data", download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download

    def prepare_data(self) -> None:
        if self.download:  # one call fetches the archive with both splits; a no-op if present
            self.dataset_class(self.data_dir, train=False, download=True)

    def load_split(self, train: bool) -> tuple[Tensor, Tensor]:
        try:
            dataset = self.dataset_class(self.data_dir, train=train, download=False)
        except RuntimeError as error:
            folder = os.path.abspath(os.path.join(self.data_dir, self.dataset_class.base_folder))
            raise FileNotFoundError(
                f"{self.name} not found (or incomplete) in {folder}. Set download=True: "
                f"prepare_data() (which Trainer calls) then downloads {self.dataset_class.url} "
                f"into data_dir={self.data_dir!r}; or extract that archive there yourself."
            ) from error
        if self.class_names is None:  # CIFAR-100's names are in its meta file
            self.class_names = tuple(dataset.classes)
        # torchvision holds NHWC, the transpose of the files' NCHW: permuting back costs no copy.
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(dataset.targets, dtype=torch.int64)


class CIFAR100LTDataModule(CIFAR10LTDataModule):
    """CIFAR-100-LT: 100 classes, 32×32 RGB; ``imbalance_ratio=100`` keeps 10,847 training images.

    Arguments as :class:`CIFAR10LTDataModule` (``data_dir`` holds ``cifar-100-python``).
    """

    name = "CIFAR-100"
    dataset_class = CIFAR100
    num_classes = 100
    max_count = 500
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    class_names = None  # read from the dataset's ``meta`` file by ``setup``
