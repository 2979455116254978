"""Finding the image files below a folder, as a folder scan must: every image once, nothing else.

* hidden names — files and folders starting with ``.`` (``.ipynb_checkpoints/``, ``.git/``,
  macOS's ``._photo.jpg``) — are skipped;
* symbolic links are followed while they stay inside the scanned folder; a link that leads
  outside it is refused with its name and target (a CSV list is the way to name images
  elsewhere);
* a folder reached twice (a link loop, a second link to it) is read once, and a file reached
  twice (a link to an image of the folder) is counted once, with a warning that says how many.

The order is that of torchvision's ``make_dataset``: a folder's images by name, then its
sub-folders in name order; where a file is reached twice, the first path in that order is kept.
"""

import os
import warnings

#: Extensions of the images a folder scan picks up: torchvision's ``IMG_EXTENSIONS`` and GIF
#: (its first frame is read).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
)


def is_hidden(name: str) -> bool:
    """Whether a file or folder name is hidden (starts with ``.``)."""
    return name.startswith(".")


def _real_inside(path: str, root: str, real_root: str) -> str:
    """The real path of ``path``; ``ValueError`` if a link takes it outside ``root``."""
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ValueError(
            f"{path}: a symbolic link to {real}, outside the image folder {root} (links that "
            "leave the folder are refused: list such images in a CSV file instead)"
        )
    return real


def image_files(root: str) -> list[str]:
    """The image files below ``root`` (recursive), as paths that start with ``root``.

    Raises:
        ValueError: a symbolic link leads outside ``root`` (the message names it).
    """
    real_root = os.path.realpath(root)
    seen_folders: set[str] = set()
    seen_files: set[str] = set()
    found: list[str] = []
    repeated = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        real_folder = _real_inside(folder, root, real_root)
        if real_folder in seen_folders:
            continue  # a link loop, or a second link to the same folder
        seen_folders.add(real_folder)
        with os.scandir(folder) as scan:
            entries = sorted((e for e in scan if not is_hidden(e.name)), key=lambda e: e.name)
        subfolders = []
        for entry in entries:
            if entry.is_dir():
                subfolders.append(entry.path)
            elif entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                real = (
                    _real_inside(entry.path, root, real_root)
                    if entry.is_symlink()
                    else os.path.join(real_folder, entry.name)
                )
                if real in seen_files:
                    repeated += 1
                    continue
                seen_files.add(real)
                found.append(entry.path)
        pending.extend(reversed(subfolders))
    if repeated:
        warnings.warn(
            f"{root}: {repeated} image(s) reached a second time through a symbolic link are "
            "counted once",
            stacklevel=3,
        )
    return found
