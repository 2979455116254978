"""ImageNet-LT and Places-LT (Liu et al., "Large-Scale Long-Tailed Recognition in an Open World",
CVPR 2019): the split files of the OLTR release over the ImageNet-2012 and Places365 images.

Split files ``<prefix>_{train,val,test}.txt`` list ``relpath label`` per line, paths relative to
the image root: ImageNet-LT 115,846 / 20,000 / 50,000 images of 1,000 classes (1,280 to 5 per
class), Places-LT 62,500 / 7,300 / 36,500 of 365 classes (4,980 to 5). The validation file is
the papers' validation split (20 per class, carved from the original training set); the test file
is the original validation set, balanced. ``class_counts`` are those of the training file.

ImageNet-LT's test file lists ``val/<wnid>/ILSVRC2012_val_….JPEG``, while ILSVRC2012's validation
archive extracts flat (``val/ILSVRC2012_val_….JPEG``); both layouts are accepted, in either
direction, the class folder being the training class's WordNet id.
"""

import os
from typing import Any, ClassVar

from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.image_list import ImageList, class_names_from_paths, read_split_file


class SplitFileLTDataModule(FileLongTailDataModule):
    """A benchmark given as ``<prefix>_{train,val,test}.txt`` split files (see the module doc).

    Args:
        root: the image root the split files' paths are relative to.
        split_dir: the folder of the split files; ``None``: ``root``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``val_per_class``, ``imbalance_ratio``, ``image_size``, …), by name;
            ``val_per_class`` applies only when the validation file is absent.
    """

    #: ``ImageNet_LT`` / ``Places_LT``.
    prefix: ClassVar[str]
    classes: ClassVar[int]

    def __init__(self, root: str, split_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.split_dir = split_dir

    def split_path(self, split: str) -> str:
        return os.path.join(self.split_dir or self.root, f"{self.prefix}_{split}.txt")

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        train = read_split_file(self.split_path("train"), self.root)
        names = class_names_from_paths(train, self.classes)
        lists = [train]
        for split in ("val", "test"):
            path = self.split_path(split)
            lists.append(read_split_file(path, self.root) if os.path.isfile(path) else None)
        if lists[2] is not None:
            lists[2] = self.resolve_layout(lists[2], names)
        return lists[0], lists[1], lists[2], names

    def resolve_layout(self, images: ImageList, class_names: list[str]) -> ImageList:
        """The list as stored on disk (a dataset with a single layout keeps it unchanged)."""
        return images


class ImageNetLTDataModule(SplitFileLTDataModule):
    """ImageNet-LT: 1,000 classes, ``ImageNet_LT_{train,val,test}.txt`` over ILSVRC2012's images.

    ``root`` holds ``train/<wnid>/…`` and ``val/`` (class folders or flat); class names are the
    WordNet ids. Arguments: see :class:`SplitFileLTDataModule`.
    """

    name = "ImageNet-LT"
    prefix = "ImageNet_LT"
    classes = 1000

    def resolve_layout(self, images: ImageList, class_names: list[str]) -> ImageList:
        if not images.paths or os.path.exists(images.full_path(0)):
            return images
        labels = images.labels.tolist()
        flat = [_flat(path) for path in images.paths]
        foldered = [
            os.path.join(os.path.dirname(path), class_names[label], os.path.basename(path))
            for path, label in zip(images.paths, labels, strict=True)
        ]
        for candidate in (flat, foldered):
            if os.path.exists(os.path.join(images.root, candidate[0])):
                return ImageList(images.root, candidate, images.labels, images.source, images.lines)
        return images  # missing either way: the file check names it


def _flat(path: str) -> str:
    """``val/<wnid>/<file>`` → ``val/<file>`` (other paths unchanged)."""
    parts = path.split(os.sep)
    return os.sep.join([*parts[:-2], parts[-1]]) if len(parts) >= 3 else path


class PlacesLTDataModule(SplitFileLTDataModule):
    """Places-LT: 365 classes, ``Places_LT_{train,val,test}.txt`` over Places365-Standard.

    ``root`` holds the Places365 images as the split files name them (``data_256/…`` for training
    and validation, ``val_256/…`` for test in the OLTR release); class names are the category
    folders (``a/airfield``). Arguments: see :class:`SplitFileLTDataModule`.
    """

    name = "Places-LT"
    prefix = "Places_LT"
    classes = 365
