"""Image lists: the ``(path, label)`` samples of a split stored as files, read from its format.

* a folder per class — torchvision's ``ImageFolder`` layout (``datasets/folder.py``,
  ``make_dataset``): the classes are the sorted sub-folder names, an image is any file with an
  image extension below its class folder (hidden names skipped, symbolic links kept inside the
  folder: :mod:`~ltlight.data.files.folder_scan`); images to predict: any folder, recursively;
* a CSV file with a header that holds a ``path`` and a ``label`` column; a label is a class index
  or a class name (images to predict: ``path`` alone, or empty labels);
* a split file of ``relpath label`` lines (ImageNet-LT, Places-LT; Liu et al., CVPR 2019);
* COCO-style JSON (iNaturalist 2018): ``images`` (``id``, ``file_name``), ``annotations``
  (``image_id``, ``category_id``) and ``categories`` (``id``, ``name``).

Paths are relative to an image root; a path that leaves it (``../``, an absolute path outside)
is refused. Every reader checks what it reads and raises a one-line ``ValueError`` naming the file
and the line (or the entry) at fault; nothing is written anywhere.
"""

import csv
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ltlight.data.files.folder_scan import IMAGE_EXTENSIONS, image_files, is_hidden

#: The label of an image whose class is not known (an image to predict).
UNKNOWN = -1


@dataclass
class ImageList:
    """The samples of one split: image paths relative to ``root`` and their class indices.

    Args:
        root: the folder the paths are relative to.
        paths: one relative path per image.
        labels: ``(N,)`` int64 class indices, or for multi-label data float32 ``(N, C)``
            targets (1 present, 0 absent, NaN uncertain; :mod:`ltlight.data.files.multilabel`).
        source: where the list was read from (a folder, a file), for messages.
        lines: the line (or entry) of ``source`` each sample came from, for messages.
        groups: an optional group per sample (ChestX-ray14's patient) that a validation carve
            keeps together.
    """

    root: str
    paths: list[str]
    labels: Tensor
    source: str
    lines: list[int] = field(default_factory=list)
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, index: int) -> str:
        return os.path.join(self.root, self.paths[index])

    def where(self, index: int) -> str:
        """``source:line`` of a sample, for error messages."""
        line = self.lines[index] if self.lines else index + 1
        return f"{self.source}:{line}"

    def subset(self, indices: Tensor | Sequence[int]) -> "ImageList":
        keep = torch.as_tensor(indices, dtype=torch.int64).tolist()
        return ImageList(
            self.root,
            [self.paths[i] for i in keep],
            self.labels[keep],
            self.source,
            [self.lines[i] for i in keep] if self.lines else [i + 1 for i in keep],
            [self.groups[i] for i in keep] if self.groups is not None else None,
        )

    @property
    def multi_label(self) -> bool:
        """Whether the labels are ``(N, C)`` multi-label targets."""
        return self.labels.dim() == 2


def drop_duplicates(images: ImageList) -> ImageList:
    """``images`` with each path once: a repeated row (same path, same label) is dropped with a
    warning that counts them; the same path with two labels is a ``ValueError`` naming both.

    A list that names an image twice would count it twice in ``class_counts`` and could put one
    copy in the carved validation split and the other in training.
    """
    first: dict[str, int] = {}
    keep = []
    labels = images.labels.tolist()
    for i, path in enumerate(images.paths):
        seen = first.setdefault(path, i)
        if seen == i:
            keep.append(i)
        elif labels[seen] != labels[i]:
            raise ValueError(
                f"{images.where(i)}: {path!r} is listed again with label {labels[i]}, but "
                f"{images.where(seen)} gives it label {labels[seen]}"
            )
    if len(keep) == len(images):
        return images
    kept = set(keep)
    repeated = next(i for i in range(len(images)) if i not in kept)
    warnings.warn(
        f"{images.source}: {len(images) - len(keep)} repeated row(s) of an image already listed "
        f"are dropped, each image counts once (the first: {images.where(repeated)} "
        f"{images.paths[repeated]!r})",
        stacklevel=2,
    )
    return images.subset(keep)


def inside_root(relpath: str, where: str) -> str:
    """``relpath`` normalised, checked to stay inside the image root.

    A leading ``/`` means "from the root", as the Places365 lists write it. Raises ``ValueError``
    naming ``where`` for an empty path or one that escapes the root (``../``).
    """
    path = relpath.strip().replace("\\", "/").lstrip("/")
    normalised = os.path.normpath(path) if path else ""
    if not normalised or normalised == "." or normalised.split(os.sep)[0] == "..":
        raise ValueError(f"{where}: path {relpath!r} is not inside the image root")
    return normalised


def check_labels(labels: Tensor, num_classes: int, image_list: ImageList) -> None:
    """Raise ``ValueError`` naming the first sample whose label is outside ``[0, num_classes)``."""
    bad = ((labels < 0) | (labels >= num_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{image_list.where(i)}: label {int(labels[i])} of {image_list.paths[i]!r} is "
            f"outside the classes [0, {num_classes})"
        )


def scan_image_folder(
    root: str, class_names: Sequence[str] | None = None, names_from: str = "training"
) -> tuple[ImageList, list[str]]:
    """An ``ImageFolder`` tree: ``root/<class>/**/<image>``, classes sorted by name.

    Hidden folders and files (``.ipynb_checkpoints/``, ``.git/``) are skipped, symbolic links
    that leave ``root`` are refused and an image reached twice is counted once
    (:func:`~ltlight.data.files.folder_scan.image_files`).

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the classes in index order (e.g. the training split's, for a test folder
            that lacks some class, or a checkpoint's); default: the sorted sub-folder names of
            ``root``.
        names_from: whose ``class_names`` they are, for the message naming an unknown folder.

    Returns:
        The image list and the class names in index order.

    Raises:
        FileNotFoundError: ``root`` is not a folder.
        ValueError: no class folder, a class folder unknown to ``class_names``, or no image.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist")
    found = sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not is_hidden(entry.name)
    )
    if not found:
        raise ValueError(f"{root}: no class folders (expected one sub-folder per class)")
    names = list(class_names) if class_names is not None else found
    index_of = {name: i for i, name in enumerate(names)}
    unknown = [name for name in found if name not in index_of]
    if unknown:
        raise ValueError(
            f"{os.path.join(root, unknown[0])}: class folder {unknown[0]!r} is not one of the "
            f"{len(names)} {names_from} classes {_shorten(names)}"
        )
    paths, labels = [], []
    for path in image_files(root):
        relpath = os.path.relpath(path, root)
        name = relpath.split(os.sep, 1)[0]
        if name != relpath:  # an image beside the class folders belongs to no class
            paths.append(relpath)
            labels.append(index_of[name])
    if not paths:
        raise ValueError(
            f"{root}: no images in its {len(found)} class folders (extensions {IMAGE_EXTENSIONS})"
        )
    return ImageList(root, paths, torch.tensor(labels, dtype=torch.int64), root), names


def scan_images(root: str) -> ImageList:
    """Every image below ``root``, recursively, without classes: images to predict.

    Their labels are :data:`UNKNOWN`; hidden names and links as in :func:`scan_image_folder`.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder {root!r} does not exist")
    paths = [os.path.relpath(path, root) for path in image_files(root)]
    if not paths:
        raise ValueError(f"{root}: no images below it (extensions {IMAGE_EXTENSIONS})")
    return ImageList(root, paths, torch.full((len(paths),), UNKNOWN, dtype=torch.int64), root)


def read_new_images(source: str, class_names: Sequence[str]) -> ImageList:
    """Images to predict: every image below a folder (recursively), the rows of a CSV with a
    ``path`` column (relative to its folder; labels optional, names or indices of
    ``class_names``), or one image file. Labels not given are :data:`UNKNOWN`."""
    if source.lower().endswith(".csv"):
        return read_csv(source, class_names=class_names, require_labels=False)[0]
    if os.path.isdir(source):
        return scan_images(source)
    if os.path.isfile(source) and source.lower().endswith(IMAGE_EXTENSIONS):
        folder, name = os.path.split(os.path.abspath(source))
        return ImageList(folder, [name], torch.tensor([UNKNOWN]), source)
    if os.path.exists(source):
        raise ValueError(
            f"predict: {source!r} is neither a folder, a .csv file nor an image "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    raise FileNotFoundError(f"predict: {source!r} does not exist (a folder, a .csv or an image)")


def read_csv(
    csv_path: str,
    root: str | None = None,
    class_names: Sequence[str] | None = None,
    require_labels: bool = True,
) -> tuple[ImageList, list[str]]:
    """A CSV with ``path`` and ``label`` columns (more columns are ignored; a UTF-8 byte order
    mark is read as one).

    A label is a class index, or a class name — one kind in a file; with names, classes are
    ``class_names`` or the sorted distinct names of this file. Paths are relative to ``root``
    (default: the CSV's folder).

    Args:
        require_labels: ``False`` for images to predict: the ``label`` column may be left out
            and a label left empty; such labels are :data:`UNKNOWN`.

    Returns:
        The image list and the class names (for integer labels: ``class_names`` or
        ``["0", "1", …]`` up to the largest label).
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"CSV file {csv_path!r} does not exist")
    root = root if root is not None else os.path.dirname(os.path.abspath(csv_path))
    rows = _csv_rows(csv_path, require_labels)
    paths = [inside_root(path, f"{csv_path}:{line}") for line, path, _ in rows]
    lines = [line for line, _, _ in rows]
    labels, names = _label_indices(csv_path, rows, class_names, require_labels)
    image_list = ImageList(root, paths, torch.tensor(labels, dtype=torch.int64), csv_path, lines)
    known = image_list.labels != UNKNOWN
    check_labels(image_list.labels[known], len(names), image_list.subset(known.nonzero()[:, 0]))
    return drop_duplicates(image_list), names


def _csv_rows(csv_path: str, require_labels: bool) -> list[tuple[int, str, str]]:
    """``(line, path, label)`` of every row; the label is ``""`` where there is none."""
    required = ["path", "label"] if require_labels else ["path"]
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if any(column not in columns for column in required):
            named = " and ".join(repr(column) for column in required)
            raise ValueError(
                f"{csv_path}:1: the header must name the columns {named}, got {columns}"
            )
        reader.fieldnames = columns
        rows = []
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if row["path"] is None or (require_labels and row["label"] is None):
                raise ValueError(f"{where}: expected the columns {columns}, got {row}")
            rows.append((reader.line_num, row["path"], (row.get("label") or "").strip()))
    if not rows:
        raise ValueError(f"{csv_path}: no rows after the header")
    return rows


def _label_indices(
    csv_path: str,
    rows: list[tuple[int, str, str]],
    class_names: Sequence[str] | None,
    require_labels: bool,
) -> tuple[list[int], list[str]]:
    """The rows' class indices (:data:`UNKNOWN` for an empty label) and the class names."""
    given = [(line, label) for line, _, label in rows if label]
    if require_labels and len(given) < len(rows):
        line = next(line for line, _, label in rows if not label)
        raise ValueError(f"{csv_path}:{line}: the label is empty")
    kinds = {_is_int(label) for _, label in given}
    if len(kinds) > 1 and class_names is None:
        first_line, first = given[0]
        line, label = next(
            (line, label) for line, label in given if _is_int(label) != _is_int(first)
        )
        raise ValueError(
            f"{csv_path}:{line}: label {label!r} is a class {_kind(label)}, but {csv_path}:"
            f"{first_line} gives the class {_kind(first)} {first!r}: use class names or class "
            "indices, not both"
        )
    if kinds == {True}:
        indices = [int(label) if label else UNKNOWN for _, _, label in rows]
        if class_names is not None:
            return indices, list(class_names)
        _check_indices_complete(csv_path, given)
        return indices, [str(c) for c in range(max(indices) + 1)]
    names = list(class_names) if class_names is not None else sorted({x for _, x in given})
    index_of = {name: i for i, name in enumerate(names)}
    for line, label in given:
        if label not in index_of:
            raise ValueError(f"{csv_path}:{line}: label {label!r} is not a known class")
    return [index_of[label] if label else UNKNOWN for _, _, label in rows], names


def _check_indices_complete(csv_path: str, given: list[tuple[int, str]]) -> None:
    """Without class names, integer labels are the indices ``0 … C−1`` of the ``C`` classes:
    a ``ValueError`` names the line of a label above an index that no row has (a label ``≥ C``
    would otherwise surface later as a wrong class count)."""
    present = {int(label) for _, label in given}
    missing = next((c for c in range(max(present) + 1) if c not in present), None)
    if missing is not None:
        line, label = next((line, label) for line, label in given if int(label) > missing)
        raise ValueError(
            f"{csv_path}:{line}: label {label} makes {max(present) + 1} classes, but no row has "
            f"class {missing}: without class_names, labels must be the class indices 0 … C-1"
        )


def _kind(label: str) -> str:
    return "index" if _is_int(label) else "name"


def _shorten(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}]"


def read_split_file(split_path: str, root: str) -> ImageList:
    """A split file of ``relpath label`` lines (ImageNet-LT, Places-LT); blank lines skipped."""
    if not os.path.isfile(split_path):
        raise FileNotFoundError(f"split file {split_path!r} does not exist")
    paths, labels, lines = [], [], []
    with open(split_path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            parts = text.rsplit(maxsplit=1)
            if len(parts) != 2 or not _is_int(parts[1]):
                raise ValueError(
                    f"{split_path}:{number}: expected 'relative/path label', got {text.strip()!r}"
                )
            paths.append(inside_root(parts[0], f"{split_path}:{number}"))
            labels.append(int(parts[1]))
            lines.append(number)
    if not paths:
        raise ValueError(f"{split_path}: the split file lists no image")
    return drop_duplicates(
        ImageList(root, paths, torch.tensor(labels, dtype=torch.int64), split_path, lines)
    )


def load_coco_file(json_path: str) -> dict:
    """A COCO-format JSON file, checked to hold lists under ``images``, ``annotations`` and
    ``categories``; a ``ValueError`` naming the file (and the line of a syntax error) otherwise."""
    if not os.path.isfile(json_path):
        raise FileNotFoundError(f"annotation file {json_path!r} does not exist")
    with open(json_path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{json_path}:{error.lineno}: not valid JSON ({error.msg})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{json_path}: expected a list under {key!r} (COCO format)")
    return data


def read_coco_json(json_path: str, root: str) -> tuple[ImageList, list[str], list[int]]:
    """COCO-style classification annotations (iNaturalist 2017-2021).

    Returns:
        The image list (labels are category positions in id order), the category names and the
        category ids in that order.
    """
    data = load_coco_file(json_path)
    try:
        categories = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in data["categories"])
        file_of = {int(image["id"]): image["file_name"] for image in data["images"]}
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{json_path}: a category or image entry lacks {error}") from None
    position = {category_id: i for i, (category_id, _) in enumerate(categories)}
    paths, labels, lines = [], [], []
    for number, annotation in enumerate(data["annotations"], start=1):
        where = f"{json_path}: annotations[{number - 1}]"
        try:
            image_id, category_id = int(annotation["image_id"]), int(annotation["category_id"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: expected 'image_id' and 'category_id'") from None
        if image_id not in file_of:
            raise ValueError(f"{where}: image_id {image_id} is not in 'images'")
        if category_id not in position:
            raise ValueError(f"{where}: category_id {category_id} is not in 'categories'")
        paths.append(inside_root(file_of[image_id], where))
        labels.append(position[category_id])
        lines.append(number)
    if not paths:
        raise ValueError(f"{json_path}: no annotations")
    image_list = ImageList(root, paths, torch.tensor(labels, dtype=torch.int64), json_path, lines)
    return image_list, [name for _, name in categories], [i for i, _ in categories]


def class_names_from_paths(image_list: ImageList, num_classes: int) -> list[str]:
    """Each class's name: the folder of its first image, less the folders all classes share.

    ``train/n01440764/x.JPEG`` gives ``n01440764``; ``data_256/a/airfield/x.jpg`` gives
    ``a/airfield``. A class without an image is named by its index.
    """
    folders: dict[int, str] = {}
    for path, label in zip(image_list.paths, image_list.labels.tolist(), strict=True):
        folders.setdefault(label, os.path.dirname(path))
    parts = [folder.split(os.sep) for folder in folders.values()]
    common = 0
    if len(parts) > 1:
        while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
            common += 1
    return [
        os.sep.join(folders[c].split(os.sep)[common:]) or str(c) if c in folders else str(c)
        for c in range(num_classes)
    ]


def _is_int(text: str) -> bool:
    text = text.strip()
    return text.lstrip("-").isdigit()
