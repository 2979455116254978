"""iNaturalist 2018 (Van Horn et al., CVPR 2018): 437,513 training images of 8,142 species,
naturally long-tailed (1,000 to 2 per class), the largest of the long-tail benchmarks.

The competition's COCO-style annotation files: ``train2018.json`` (training) and ``val2018.json``
(24,426 images, 3 per class), which the long-tail papers (Cui et al. 2019, Cao et al. 2019, Kang
et al. 2020 and after) report as their *test* split — there is no public labelled test set. A
validation split for model selection is therefore carved from training (``val_per_class``), or
with ``val_per_class = 0`` the papers' protocol validates on ``val2018`` and selects nothing.
Labels are the category ids' positions in id order (the ids are 0 … 8141 in the 2018 release).
"""

import os
from typing import Any

from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.image_list import ImageList, read_coco_json


class INaturalist2018DataModule(FileLongTailDataModule):
    """iNaturalist 2018 from ``train2018.json`` / ``val2018.json`` (the latter is the test split).

    Args:
        root: the folder the JSON files' ``file_name`` paths are relative to (it holds
            ``train_val2018/``).
        annotation_dir: the folder of ``train2018.json`` and ``val2018.json``; ``None``: ``root``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``val_per_class``, ``imbalance_ratio``, ``image_size``, …), by name.
    """

    name = "iNaturalist 2018"

    def __init__(self, root: str, annotation_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.annotation_dir = annotation_dir

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        folder = self.annotation_dir or self.root
        train, names, ids = read_coco_json(os.path.join(folder, "train2018.json"), self.root)
        test, _, test_ids = read_coco_json(os.path.join(folder, "val2018.json"), self.root)
        if test_ids != ids:
            raise ValueError(
                f"{os.path.join(folder, 'val2018.json')}: its {len(test_ids)} categories differ "
                f"from the {len(ids)} of train2018.json"
            )
        return train, None, test, names
