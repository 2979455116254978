"""Checkpoint files a user names: a clear error for a file that is not a checkpoint, and a
backbone's weights taken out of another run's checkpoint.

``torch.save`` writes a zip archive whose members each carry a CRC-32. A truncated file has no
zip directory; a file with damaged bytes still loads with ``torch.load`` (which does not check the
CRCs) and evaluates wrong weights. :func:`read_checkpoint` checks the archive first, then loads
it safely (``weights_only=True``), and names the file and what is wrong with it.
``LongTailModule(init_weights=<run>.ckpt)`` starts stage 2 of decoupled training from stage 1's
backbone: :func:`load_backbone_weights` copies those tensors and names any that do not fit.
"""

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn


def check_checkpoint_file(path: str | os.PathLike) -> Path:
    """Raise ``FileNotFoundError`` / ``ValueError`` unless ``path`` is an intact zip checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ckpt_path: {path} does not exist")
    if path.is_dir():
        raise ValueError(f"ckpt_path: {path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"ckpt_path: {path} is empty (0 bytes), not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"ckpt_path: {path} is not a PyTorch checkpoint: it has no zip directory (a truncated "
            "or partly copied checkpoint, or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"ckpt_path: {path} is a damaged checkpoint archive ({error})") from error
    if damaged is not None:
        raise ValueError(
            f"ckpt_path: {path} is damaged: member {damaged!r} fails its CRC-32 check (the file "
            "changed after it was written)"
        )
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only=True``, after
    :func:`check_checkpoint_file`; a ``ValueError`` naming the file if it is not a Lightning
    checkpoint."""
    path = check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(
            f"ckpt_path: {path} could not be read as a checkpoint: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"ckpt_path: {path} is a torch file but not a Lightning checkpoint (no 'state_dict')"
        )
    return checkpoint


def load_backbone_weights(
    backbone: nn.Module,
    path: str,
    complete: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Copy the ``backbone.*`` tensors of the checkpoint at ``path`` into ``backbone``;
    ``complete``, if given, first fills in what the checkpoint left out (a fine-tuned run's
    frozen base: :func:`ltlight.finetune.checkpoints.restore_frozen_tensors`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a backbone tensor missing from the checkpoint, an extra one, or one with
            another shape; the message names it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"init_weights: no checkpoint at {path!r} (the stage-1 run's .ckpt: run stage 1 "
            "first, or point init_weights at its checkpoint)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if complete is not None and "state_dict" in checkpoint:
        complete(checkpoint)
    state = checkpoint.get("state_dict", checkpoint)
    prefix = "backbone."
    saved = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = backbone.state_dict()
    for name, tensor in own.items():
        if name not in saved:
            raise ValueError(
                f"init_weights: {path} has no tensor backbone.{name} (another architecture?)"
            )
        if saved[name].shape != tensor.shape:
            raise ValueError(
                f"init_weights: backbone.{name} has shape {tuple(saved[name].shape)} in "
                f"{path} but {tuple(tensor.shape)} here (another architecture or class count)"
            )
    extra = sorted(set(saved) - set(own))
    if extra:
        raise ValueError(
            f"init_weights: {path} has backbone tensors this backbone lacks, e.g. "
            f"backbone.{extra[0]} (another architecture?)"
        )
    backbone.load_state_dict(saved)
