"""A user's own images as a long-tailed datamodule: a folder per class, or a CSV per split."""

import os
from typing import Any

from ltlight.checks import check_choice
from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.image_list import ImageList, read_csv, scan_image_folder
from ltlight.data.files.multilabel import (
    UNCERTAIN_POLICIES,
    is_multilabel_csv,
    read_multilabel_csv,
)


class ImageFolderLTDataModule(FileLongTailDataModule):
    """Your own data: each split a folder per class (torchvision ``ImageFolder``) or a CSV file.

    ``train`` / ``val`` / ``test`` are each a folder ``<split>/<class name>/…/<image>`` (classes
    are the training folder's sorted sub-folder names; the other splits use the same indices) or a
    ``.csv`` file with a header naming the columns ``path`` and ``label`` (a class index or a
    class name; paths relative to ``root``, by default the CSV's folder). ``class_counts`` are the
    training split's as read (natural imbalance), or after the optional profile.

    Multi-label data: CSV files whose header has a ``labels`` column (classes separated by ``|``,
    names or indices, empty for none) or one column per class (``path,<class 1>,…``: 1, 0, and -1
    or empty as ``uncertain`` says); see :mod:`ltlight.data.files.multilabel`. The datamodule is
    then :attr:`multi_label`, its targets float ``(N, C)`` (NaN: uncertain, ignored by default),
    ``class_counts`` the positives per class; carve validation with ``val_fraction``.

    Args:
        train: the training folder or CSV.
        val: the validation folder or CSV; ``None``: carve ``val_per_class`` images per class from
            ``train`` (seeded), or with ``val_per_class = 0`` validate on ``test``.
        test: the test folder or CSV, or ``None``.
        root: for CSV files, the folder their paths are relative to.
        class_names: names of the classes in index order, for CSV files with integer labels (or
            to fix the order of folder / CSV names).
        uncertain: multi-label wide CSV files: what ``-1`` and empty entries become —
            ``"ignore"`` (NaN, left out of the loss and the metrics), ``"negative"`` or
            ``"positive"``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``val_per_class``, ``imbalance_ratio``, ``image_size``, …), by name.

    Example:
        >>> import tempfile, pathlib, PIL.Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name, n in (("cat", 3), ("dog", 1)):
        ...     (root / "train" / name).mkdir(parents=True)
        ...     for i in range(n):
        ...         PIL.Image.new("RGB", (40, 30)).save(root / "train" / name / f"{i}.jpg")
        >>> data = ImageFolderLTDataModule(train=str(root / "train"), num_workers=0)
        >>> data.class_names, data.class_counts
        (['cat', 'dog'], [3, 1])
    """

    name = "image folder"

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        root: str | None = None,
        class_names: list[str] | None = None,
        uncertain: str = "ignore",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.uncertain = check_choice("uncertain", uncertain, UNCERTAIN_POLICIES)
        self.train_source = train
        self.val_source = val
        self.test_source = test
        self.root = root
        self.given_class_names = list(class_names) if class_names is not None else None

    def _read(
        self, source: str, names: list[str] | None, names_from: str = "training"
    ) -> tuple[ImageList, list[str]]:
        if source.lower().endswith(".csv"):
            if is_multilabel_csv(source):
                return read_multilabel_csv(source, self.root, names, self.uncertain)
            return read_csv(source, root=self.root, class_names=names)
        if os.path.isfile(source):
            raise ValueError(f"{source}: expected a folder per class or a .csv file")
        return scan_image_folder(source, class_names=names, names_from=names_from)

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        given, whose = self.given_class_names, "training"
        if self.checkpoint_class_names is not None:
            given, whose = self.checkpoint_class_names, "checkpoint's"
        train, names = self._read(self.train_source, given, whose)
        val = self._read(self.val_source, names, whose)[0] if self.val_source else None
        test = self._read(self.test_source, names, whose)[0] if self.test_source else None
        return train, val, test, names
