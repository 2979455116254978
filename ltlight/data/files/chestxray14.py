"""ChestX-ray14 (Wang et al., "ChestX-ray8", CVPR 2017; NIH Clinical Center): 112,120 frontal
chest X-rays of 30,805 patients, 14 findings mined from the reports, naturally long-tailed
(Infiltration 19,894 images … Hernia 227), most images with no finding.

The release's files: ``Data_Entry_2017.csv`` (``Image Index``, ``Finding Labels`` — findings
separated by ``|``, ``No Finding`` for none —, ``Patient ID``, …), the official patient-wise
split ``train_val_list.txt`` (86,524 images) / ``test_list.txt`` (25,596), one file name per
line, and the PNGs extracted from ``images_001.tar.gz`` … ``images_012.tar.gz`` into
``images/``. A validation split carved from ``train_val`` (``val_fraction``) takes whole
patients, so no patient is in both training and validation; the test list shares no patient with
either.
"""

import csv
import os
from typing import Any

import torch

from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.image_list import ImageList
from ltlight.data.files.voc_coco_mlt import read_id_list

#: The 14 findings, in the order of the paper and of most code since (CheXNet et al.).
CHESTXRAY14_CLASSES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
    "Hernia",
)  # fmt: skip
NO_FINDING = "No Finding"


def read_data_entry(csv_path: str) -> dict[str, tuple[torch.Tensor, str]]:
    """``image file name → (float (14,) target, patient id)`` from ``Data_Entry_2017.csv``."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"ChestX-ray14 label file {csv_path!r} does not exist")
    index_of = {name: i for i, name in enumerate(CHESTXRAY14_CLASSES)}
    entries = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = ("Image Index", "Finding Labels", "Patient ID")
        if not set(needed) <= set(reader.fieldnames or []):
            raise ValueError(f"{csv_path}:1: the header must name the columns {list(needed)}")
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if not (row["Image Index"] or "").strip():
                raise ValueError(f"{where}: the row has no path")
            target = torch.zeros(len(CHESTXRAY14_CLASSES))
            for finding in (row["Finding Labels"] or "").split("|"):
                finding = finding.strip()
                if finding in ("", NO_FINDING):
                    continue
                if finding not in index_of:
                    raise ValueError(
                        f"{where}: finding {finding!r} is not one of the 14 ChestX-ray14 classes"
                    )
                target[index_of[finding]] = 1.0
            entries[row["Image Index"].strip()] = (target, str(row["Patient ID"]).strip())
    return entries


class ChestXray14DataModule(FileLongTailDataModule):
    """ChestX-ray14 from the NIH release (see the module doc); 14 findings, multi-label.

    Args:
        root: the folder of ``Data_Entry_2017.csv``, ``train_val_list.txt``, ``test_list.txt``.
        image_dir: the folder of the PNGs; ``None``: ``<root>/images``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``val_fraction`` — carved per patient —, ``sampling``, …), by name.
    """

    name = "ChestX-ray14"

    def __init__(self, root: str, image_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.image_dir = image_dir or os.path.join(root, "images")

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        label_file = os.path.join(self.root, "Data_Entry_2017.csv")
        entries = read_data_entry(label_file)
        train = self._split(os.path.join(self.root, "train_val_list.txt"), entries, label_file)
        test = self._split(os.path.join(self.root, "test_list.txt"), entries, label_file)
        return train, None, test, list(CHESTXRAY14_CLASSES)

    def _split(
        self, list_path: str, entries: dict[str, tuple[torch.Tensor, str]], label_file: str
    ) -> ImageList:
        paths, rows, patients, lines = [], [], [], []
        for line, name in read_id_list(list_path):
            if name not in entries:
                raise ValueError(f"{list_path}:{line}: image {name!r} is not in {label_file}")
            target, patient = entries[name]
            paths.append(name)
            rows.append(target)
            patients.append(patient)
            lines.append(line)
        return ImageList(self.image_dir, paths, torch.stack(rows), list_path, lines, patients)
