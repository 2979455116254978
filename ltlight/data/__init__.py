"""Long-tailed datasets as LightningDataModules: in memory (``tensor``) or files (``files``)."""

from ltlight.data.files.chestxray14 import ChestXray14DataModule
from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.folder import ImageFolderLTDataModule
from ltlight.data.files.image_list import ImageList
from ltlight.data.files.inaturalist import INaturalist2018DataModule
from ltlight.data.files.loader import FileDataLoader
from ltlight.data.files.split_files import ImageNetLTDataModule, PlacesLTDataModule
from ltlight.data.files.streaming import StreamingLTDataModule
from ltlight.data.files.voc_coco_mlt import COCOMLTDataModule, VOCMLTDataModule
from ltlight.data.profiles import (
    PROFILES,
    long_tail_counts,
    long_tail_indices,
    validation_indices,
)
from ltlight.data.sampling import EpochSampler
from ltlight.data.tensor.augment import crop_flip, random_crop_flip
from ltlight.data.tensor.cifar import CIFAR10LTDataModule, CIFAR100LTDataModule
from ltlight.data.tensor.datamodule import LongTailDataModule
from ltlight.data.tensor.digits import DigitsLTDataModule
from ltlight.data.tensor.fashion_mnist import FashionMNISTLTDataModule
from ltlight.data.tensor.loader import DeviceDataLoader
from ltlight.preprocessing import Normalize

__all__ = [
    "PROFILES",
    "CIFAR10LTDataModule",
    "CIFAR100LTDataModule",
    "COCOMLTDataModule",
    "ChestXray14DataModule",
    "DeviceDataLoader",
    "DigitsLTDataModule",
    "EpochSampler",
    "FashionMNISTLTDataModule",
    "FileDataLoader",
    "FileLongTailDataModule",
    "INaturalist2018DataModule",
    "ImageFolderLTDataModule",
    "ImageList",
    "ImageNetLTDataModule",
    "LongTailDataModule",
    "Normalize",
    "PlacesLTDataModule",
    "StreamingLTDataModule",
    "VOCMLTDataModule",
    "crop_flip",
    "long_tail_counts",
    "long_tail_indices",
    "random_crop_flip",
    "validation_indices",
]
