"""VOC-MLT and COCO-MLT (Wu et al., "Distribution-Balanced Loss for Multi-Label Classification
in Long-Tailed Datasets", ECCV 2020): long-tailed training subsets of Pascal VOC 2012 and MS COCO
2017, tested on the full VOC 2007 test set and COCO 2017 val, as the DB-loss release
(wutong16/DistributionBalancedLoss, ``appendix/``) defines them.

* **VOC-MLT**: ``appendix/VOCdevkit/longtail2012/img_id.txt`` lists the 1,142 training images
  (VOC 2012 ids, one per line); an image's classes are the ``<object><name>`` of its
  ``VOC2012/Annotations/<id>.xml`` (every object, ``difficult`` ones included, as the release's
  ``XMLDataset`` reads them); 20 classes from 775 to 4 positives. Test: the 4,952 images of
  ``VOC2007/ImageSets/Main/test.txt`` with their ``VOC2007/Annotations``.
* **COCO-MLT**: ``appendix/coco/longtail2017/img_id.pkl`` — despite its name a text file of
  COCO image ids, one per line — lists the 1,909 training images of ``train2017``; an image's
  classes are the categories of its ``annotations/instances_train2017.json`` boxes, leaving out
  boxes with ``ignore``, ``area <= 0`` or a side < 1 (the release's ``_parse_ann_info``); 80
  classes, index = position of the category id in id order. Test: every image of
  ``instances_val2017.json`` (5,000).

Training images whose shorter side is below 32 pixels are left out, as the release does
(``CustomDataset``). Head / medium / tail follow from the counts. The release's
``class_split.pkl`` (checked against its ``class_freq.pkl``) puts a class with exactly 100
positives in head (VOC-MLT: 6 / 6 / 8 classes, counts 775 … 100 / 82 … 20 / 17 … 4; COCO-MLT:
22 / 33 / 25, 1128 … 100 / 97 … 20 / 19 … 6), where ltlight's single-label rule (> 100) makes it
medium: a many-shot threshold of 99 reproduces the release's groups.
"""

import os
import xml.etree.ElementTree as ET
from typing import Any

import torch

from ltlight.data.files.datamodule import FileLongTailDataModule
from ltlight.data.files.image_list import ImageList, load_coco_file

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
#: The release drops training images whose shorter side is below this.
MIN_TRAIN_SIZE = 32


def read_id_list(list_path: str) -> list[tuple[int, str]]:
    """``(line, id)`` of a file of image ids, one per line (blank lines skipped)."""
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"image id list {list_path!r} does not exist")
    with open(list_path, encoding="utf-8") as f:
        ids = [(number, text.strip()) for number, text in enumerate(f, start=1) if text.strip()]
    if not ids:
        raise ValueError(f"{list_path}: the list names no image")
    return ids


def read_voc(list_path: str, voc_dir: str, min_size: int = 0) -> ImageList:
    """The VOC images of an id list (``<voc_dir>/JPEGImages/<id>.jpg``) and their classes from
    ``<voc_dir>/Annotations/<id>.xml``; images with a side below ``min_size`` left out."""
    index_of = {name: i for i, name in enumerate(VOC_CLASSES)}
    paths, rows, lines = [], [], []
    for line, image_id in read_id_list(list_path):
        xml_path = os.path.join(voc_dir, "Annotations", f"{image_id}.xml")
        if not os.path.isfile(xml_path):
            raise FileNotFoundError(f"{list_path}:{line}: annotation {xml_path!r} does not exist")
        try:
            annotation = ET.parse(xml_path).getroot()
            size = annotation.find("size")
            width, height = int(size.findtext("width")), int(size.findtext("height"))
            names = [obj.findtext("name", "").strip() for obj in annotation.iter("object")]
        except (ET.ParseError, AttributeError, TypeError, ValueError) as error:
            raise ValueError(f"{xml_path}: not a VOC annotation with a size ({error})") from None
        if min(width, height) < min_size:
            continue
        target = torch.zeros(len(VOC_CLASSES))
        for name in names:
            if name not in index_of:
                raise ValueError(f"{xml_path}: object {name!r} is not one of the 20 VOC classes")
            target[index_of[name]] = 1.0
        paths.append(os.path.join("JPEGImages", f"{image_id}.jpg"))
        rows.append(target)
        lines.append(line)
    return ImageList(voc_dir, paths, torch.stack(rows), list_path, lines)


def read_coco_instances(
    json_path: str, image_dir: str, list_path: str | None = None, min_size: int = 0
) -> tuple[ImageList, list[str]]:
    """Multi-label targets of COCO images from an ``instances_*.json`` file.

    Args:
        json_path: the COCO instances annotation file.
        image_dir: the folder of its images (``file_name`` is relative to it).
        list_path: a file of image ids, one per line, choosing and ordering the images;
            ``None``: every image of the file, in its order.
        min_size: leave out images whose shorter side is below this.

    Returns:
        The image list (targets float ``(N, 80)``) and the category names in id order.
    """
    data = load_coco_file(json_path)
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in data["categories"])
        images = {int(image["id"]): image for image in data["images"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{json_path}: a category or image entry lacks {error}") from None
    column = {category_id: i for i, (category_id, _) in enumerate(categories)}
    labels: dict[int, set[int]] = {}
    for number, box in enumerate(data["annotations"]):
        where = f"{json_path}: annotations[{number}]"
        try:
            _, _, w, h = box["bbox"]
            skipped = box.get("ignore", False) or box["area"] <= 0 or w < 1 or h < 1
            image_id, category_id = int(box["image_id"]), int(box["category_id"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: bad or missing {error}") from None
        if category_id not in column:
            raise ValueError(f"{where}: category_id {category_id} is not in 'categories'")
        if not skipped:
            labels.setdefault(image_id, set()).add(column[category_id])
    if list_path is None:
        chosen = [(None, image_id) for image_id in images]
    else:
        chosen = []
        for line, text in read_id_list(list_path):
            if not text.isdigit() or int(text) not in images:
                raise ValueError(f"{list_path}:{line}: image id {text!r} is not in {json_path}")
            chosen.append((line, int(text)))
    paths, rows, lines = [], [], []
    for line, image_id in chosen:
        image = images[image_id]
        if min(image.get("width", min_size), image.get("height", min_size)) < min_size:
            continue
        target = torch.zeros(len(categories))
        target[sorted(labels.get(image_id, ()))] = 1.0
        paths.append(str(image["file_name"]))
        rows.append(target)
        lines.append(line if line is not None else len(lines) + 1)
    source = list_path if list_path is not None else json_path
    return ImageList(image_dir, paths, torch.stack(rows), source, lines), [n for _, n in categories]


class VOCMLTDataModule(FileLongTailDataModule):
    """VOC-MLT (DB-loss release; see the module doc): 1,142 training images, 20 classes.

    Args:
        root: the ``VOCdevkit`` folder holding ``VOC2012/`` and ``VOC2007/``.
        split_file: the release's ``img_id.txt``; ``None``: ``<root>/longtail2012/img_id.txt``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule` (``batch_size``,
            ``num_workers``, ``val_fraction``, ``sampling``, ``image_size``, …), by name.
    """

    name = "VOC-MLT"

    def __init__(self, root: str, split_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.split_file = split_file or os.path.join(root, "longtail2012", "img_id.txt")

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        train = read_voc(self.split_file, os.path.join(self.root, "VOC2012"), MIN_TRAIN_SIZE)
        voc2007 = os.path.join(self.root, "VOC2007")
        test = read_voc(os.path.join(voc2007, "ImageSets", "Main", "test.txt"), voc2007)
        return train, None, test, list(VOC_CLASSES)


class COCOMLTDataModule(FileLongTailDataModule):
    """COCO-MLT (DB-loss release; see the module doc): 1,909 training images, 80 classes.

    Args:
        root: the COCO 2017 folder holding ``train2017/``, ``val2017/`` and
            ``annotations/instances_{train,val}2017.json``.
        split_file: the release's ``img_id.pkl`` (a text file of ids); ``None``:
            ``<root>/longtail2017/img_id.pkl``.
        **kwargs: every argument of
            :class:`~ltlight.data.files.datamodule.FileLongTailDataModule`, by name.
    """

    name = "COCO-MLT"

    def __init__(self, root: str, split_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.split_file = split_file or os.path.join(root, "longtail2017", "img_id.pkl")

    def read_lists(self) -> tuple[ImageList, ImageList | None, ImageList | None, list[str]]:
        annotations = os.path.join(self.root, "annotations")
        train, names = read_coco_instances(
            os.path.join(annotations, "instances_train2017.json"),
            os.path.join(self.root, "train2017"),
            self.split_file,
            MIN_TRAIN_SIZE,
        )
        test, test_names = read_coco_instances(
            os.path.join(annotations, "instances_val2017.json"), os.path.join(self.root, "val2017")
        )
        if test_names != names:
            raise ValueError(
                f"{os.path.join(annotations, 'instances_val2017.json')}: its categories differ "
                "from instances_train2017.json's"
            )
        return train, None, test, names
