"""Multi-label image lists: every image has a set of classes (possibly none, possibly uncertain).

Targets are float ``(N, C)``: ``1`` the class is present, ``0`` absent, ``NaN`` uncertain or not
annotated — ignored by the losses and metrics by default. Two CSV forms, one per split, with a
header:

* the **list form** ``path,labels``: ``labels`` holds the image's classes separated by ``|``,
  as class names or class indices (``cat|dog``, ``0|3``); an empty field is an image without any
  class (ChestX-ray14's "No Finding");
* the **wide form** ``path,<class 1>,…,<class C>``: one column per class holding ``1`` / ``0``
  (``1.0`` / ``0.0`` too), and the *uncertain* (``-1``) or *missing* (empty) entries of
  CheXpert-style files, mapped by ``uncertain``: ``"ignore"`` → ``NaN`` (the default: neither
  positive nor negative; Irvin et al., AAAI 2019 call it U-Ignore), ``"negative"`` → 0
  (U-Zeros), ``"positive"`` → 1 (U-Ones).

Class counts of multi-label data are the positives per class; head / medium / tail by the
single-label thresholds (> 100, 20–100, < 20 positives; the DB-loss protocol, Wu et al.,
ECCV 2020). Every reader raises a one-line ``ValueError`` naming the file and the line at fault.
"""

import csv
import os
from collections.abc import Sequence

import torch
from torch import Tensor

from ltlight.checks import check_choice
from ltlight.data.files.image_list import ImageList, inside_root
from ltlight.metrics.functional import shot_groups

#: What the wide form's uncertain (``-1``) and missing (empty) entries become.
UNCERTAIN_POLICIES = ("ignore", "negative", "positive")
_UNCERTAIN_VALUE = {"ignore": float("nan"), "negative": 0.0, "positive": 1.0}
#: Separator of the list form's ``labels`` field.
LABEL_SEPARATOR = "|"


def is_multilabel_csv(csv_path: str) -> bool:
    """Whether a CSV's header is one of the multi-label forms (``labels``, or neither ``label``
    nor ``labels``: the wide form); ``path,label`` is single-label."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"CSV file {csv_path!r} does not exist")
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = [c.strip() for c in next(csv.reader(f), [])]
    return "label" not in header and "path" in header


def read_multilabel_csv(
    csv_path: str,
    root: str | None = None,
    class_names: Sequence[str] | None = None,
    uncertain: str = "ignore",
) -> tuple[ImageList, list[str]]:
    """A multi-label CSV in the list form or the wide form (see the module doc).

    Args:
        csv_path: the CSV file.
        root: the folder its paths are relative to; default: the CSV's folder.
        class_names: the classes in index order (the training split's, for the other splits).
            List form: default the sorted distinct names of this file, or for indices
            ``"0" … "max"``. Wide form: the columns must be exactly these.
        uncertain: ``"ignore"``, ``"negative"`` or ``"positive"``: the wide form's ``-1`` and
            empty entries.

    Returns:
        The image list (``labels`` float32 ``(N, C)``) and the class names.
    """
    check_choice("uncertain", uncertain, UNCERTAIN_POLICIES)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"CSV file {csv_path!r} does not exist")
    root = root if root is not None else os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if "path" not in header:
        raise ValueError(f"{csv_path}:1: the header must name a 'path' column, got {header}")
    if not rows:
        raise ValueError(f"{csv_path}: no rows after the header")
    path_column = header.index("path")
    paths, lines = [], []
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(f"{csv_path}:{line}: {len(row)} fields, the header has {len(header)}")
        if not row[path_column].strip():
            raise ValueError(f"{csv_path}:{line}: the row has no path")
        paths.append(inside_root(row[path_column], f"{csv_path}:{line}"))
        lines.append(line)
    if "labels" in header:
        fields = [row[header.index("labels")].strip() for _, row in rows]
        targets, names = _list_form(fields, lines, csv_path, class_names)
    else:
        columns = [c for i, c in enumerate(header) if i != path_column]
        if class_names is not None and columns != list(class_names):
            raise ValueError(
                f"{csv_path}:1: the class columns {columns} differ from the training split's "
                f"{list(class_names)}"
            )
        if len(columns) < 2:
            raise ValueError(f"{csv_path}:1: the wide form needs a column per class, got {header}")
        cells = [[c for i, c in enumerate(row) if i != path_column] for _, row in rows]
        targets, names = _wide_form(cells, lines, csv_path, uncertain), columns
    return ImageList(root, paths, targets, csv_path, lines), names


def _list_form(
    fields: list[str], lines: list[int], csv_path: str, class_names: Sequence[str] | None
) -> tuple[Tensor, list[str]]:
    tokens = [[t.strip() for t in f.split(LABEL_SEPARATOR)] if f else [] for f in fields]
    for line, labels in zip(lines, tokens, strict=True):
        if "" in labels:
            raise ValueError(f"{csv_path}:{line}: an empty label between {LABEL_SEPARATOR!r}")
    flat = [t for labels in tokens for t in labels]
    indices = bool(flat) and all(t.lstrip("-").isdigit() for t in flat)
    if class_names is not None:
        names = list(class_names)
    elif indices:
        names = [str(c) for c in range(max(int(t) for t in flat) + 1)]
    else:
        names = sorted(set(flat))
    index_of = {name: i for i, name in enumerate(names)}
    targets = torch.zeros(len(fields), len(names), dtype=torch.float32)
    for row, (line, labels) in enumerate(zip(lines, tokens, strict=True)):
        for token in labels:
            if indices:
                c = int(token)
                if not 0 <= c < len(names):
                    raise ValueError(
                        f"{csv_path}:{line}: label index {c} is outside the classes "
                        f"[0, {len(names)})"
                    )
            elif token in index_of:
                c = index_of[token]
            else:
                raise ValueError(
                    f"{csv_path}:{line}: label {token!r} is not one of the {len(names)} classes"
                )
            targets[row, c] = 1.0
    return targets, names


def _wide_form(cells: list[list[str]], lines: list[int], csv_path: str, uncertain: str) -> Tensor:
    value_of = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0, "": -1.0}
    targets = torch.empty(len(cells), len(cells[0]), dtype=torch.float32)
    for row, (line, values) in enumerate(zip(lines, cells, strict=True)):
        for c, text in enumerate(values):
            value = value_of.get(text.strip())
            if value is None:
                raise ValueError(
                    f"{csv_path}:{line}: value {text!r} in column {c + 2} is not 1, 0, -1 or empty"
                )
            targets[row, c] = value
    targets[targets == -1.0] = _UNCERTAIN_VALUE[uncertain]
    return targets


def positives_per_class(targets: Tensor) -> Tensor:
    """``(C,)`` int64: the images in which each class is present (uncertain entries not counted)."""
    return (targets == 1).sum(0)


def check_positives(targets: Tensor, class_names: Sequence[str], source: str) -> None:
    """Raise ``ValueError`` naming the first class without a positive training image."""
    empty = (positives_per_class(targets) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{source}: class {class_names[empty[0]]!r} ({empty[0]}) has no positive training "
            f"image ({len(empty)} class(es) without one)"
        )


def group_summary(class_counts: Sequence[int], many: int = 100, few: int = 20) -> str:
    """``"head (> 100) 6 · medium (20–100) 6 · tail (< 20) 8 classes"`` for a counts list."""
    head, medium, tail = torch.bincount(shot_groups(class_counts, many, few), minlength=3).tolist()
    return (
        f"head (> {many}) {head} · medium ({few}–{many}) {medium} · tail (< {few}) {tail} classes"
    )
