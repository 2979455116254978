"""Checkpoint files a user names: a backbone's weights taken out of another run's checkpoint.

``LongTailModule(init_weights=<run>.ckpt)`` starts stage 2 of decoupled training from stage 1's
backbone; :func:`load_backbone_weights` copies those tensors and names any that do not fit.
"""

import os

import torch
from torch import nn


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Copy the ``backbone.*`` tensors of the checkpoint at ``path`` into ``backbone``.

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
