"""Long-tailed datasets as LightningDataModules, and the device-resident loader they use."""

from ltlight.data.augment import Normalize, crop_flip, random_crop_flip
from ltlight.data.base import LongTailDataModule
from ltlight.data.cifar import CIFAR10LTDataModule, CIFAR100LTDataModule
from ltlight.data.device_loader import DeviceDataLoader, EpochSampler
from ltlight.data.digits import DigitsLTDataModule
from ltlight.data.fashion_mnist import FashionMNISTLTDataModule
from ltlight.data.file_base import FileLongTailDataModule
from ltlight.data.file_loader import FileDataLoader
from ltlight.data.image_folder import ImageFolderLTDataModule
from ltlight.data.image_list import ImageList
from ltlight.data.imagenet_lt import ImageNetLTDataModule, PlacesLTDataModule
from ltlight.data.inaturalist import INaturalist2018DataModule
from ltlight.data.profiles import (
    PROFILES,
    long_tail_counts,
    long_tail_indices,
    validation_indices,
)
from ltlight.data.streaming import StreamingLTDataModule

__all__ = [
    "PROFILES",
    "CIFAR10LTDataModule",
    "CIFAR100LTDataModule",
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
    "crop_flip",
    "long_tail_counts",
    "long_tail_indices",
    "random_crop_flip",
    "validation_indices",
]
