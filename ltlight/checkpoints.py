"""Checkpoint files a user names: a clear error for a file that is not a checkpoint, and a
backbone's weights taken out of another run's checkpoint.

``torch.save`` writes a zip archive whose members each carry a CRC-32. A truncated file has no
zip directory; a file with damaged bytes still loads with ``torch.load`` (which does not check the
CRCs) and evaluates wrong weights. :func:`read_checkpoint` checks the archive first, then loads
it safely (``weights_only=True``), and names the file and what is wrong with it.
``LongTailModule(init_weights=<run>.ckpt)`` starts stage 2 of decoupled training from stage 1's
backbone: :func:`load_backbone_weights` copies those tensors and names any that do not fit.

Writing: :func:`write_atomically` (and :class:`AtomicCheckpointIO`, which ``ltlight`` gives
every trainer) writes a file under a temporary name beside it and renames it into place, so a
full disk or a killed process never leaves a partial checkpoint where one is looked for.
Lightning's own save goes through the temporary folder, whose copy into the run's folder is not
atomic when the two are on different disks.
"""

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO
from torch import nn


def check_checkpoint_file(path: str | os.PathLike, argument: str = "ckpt_path") -> Path:
    """Raise ``FileNotFoundError`` / ``ValueError`` unless ``path`` is an intact zip checkpoint;
    the message starts with ``argument``, the option that named the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{argument}: {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{argument}: {path} is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise ValueError(f"{argument}: {path} is empty (0 bytes), not a checkpoint")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{argument}: {path} is not a PyTorch checkpoint: it has no zip directory (a truncated "
            "or partly copied checkpoint, or another kind of file)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member and checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"{argument}: {path} is a damaged checkpoint archive ({error})") from error
    if damaged is not None:
        raise ValueError(
            f"{argument}: {path} is damaged: member {damaged!r} fails its CRC-32 check (the file "
            "changed after it was written)"
        )
    return path


def read_checkpoint(path: str | os.PathLike, argument: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only=True``, after
    :func:`check_checkpoint_file`; a ``ValueError`` naming ``argument`` and the file if it is
    not a Lightning checkpoint."""
    checkpoint = _load(path, argument)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{argument}: {path} is a torch file but not a Lightning checkpoint (no 'state_dict')"
        )
    return checkpoint


def _load(path: str | os.PathLike, argument: str) -> Any:
    path = check_checkpoint_file(path, argument)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(
            f"{argument}: {path} could not be read as a checkpoint: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}"
        ) from error


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
        ValueError: a file that is not an intact checkpoint (truncated, damaged, empty: the
            checks of ``--ckpt_path``), a backbone tensor missing from the checkpoint, an extra
            one, or one with another shape; the message names it.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"init_weights: no checkpoint at {path!r} (the stage-1 run's .ckpt: run stage 1 "
            "first, or point init_weights at its checkpoint)"
        )
    checkpoint = _load(path, "init_weights")  # the checks --ckpt_path has
    if complete is not None and isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        complete(checkpoint)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"init_weights: {path} is a torch file but holds no state dict")
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


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(file)`` on ``.<name>.partial-<pid>`` beside ``path``, flush it to disk, then
    rename it to ``path``: ``path`` is either its old content or the whole new one, and a write
    that fails (a full disk) removes its partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, writing local files with
    :func:`write_atomically` (a remote URL is left to Lightning's own transaction)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(path, lambda file: torch.save(checkpoint, file))
