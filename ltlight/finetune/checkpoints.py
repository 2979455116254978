"""Checkpoints of a fine-tuned module that hold only what trained.

With a frozen base (every method but :class:`~ltlight.finetune.FullFineTuning`) and a backbone
that knows where its weights came from (``timm_backbone(..., checkpoint_path=...)`` or
``pretrained=True``: ``backbone.ltlight_base_weights``), the frozen pretrained tensors are left
out of the checkpoint and the base weights' identity (model name, file, SHA-256) is put in.
Loading re-creates the backbone from the same weights (the constructor does, before
``on_load_checkpoint``), checks the identity, and fills the frozen tensors in from it, so
``load_state_dict`` stays strict. A backbone without a recorded origin keeps full checkpoints.
"""

from typing import Any

from torch import nn

from ltlight.finetune.base import FineTuning

BASE_KEY = "ltlight_base_weights"
METHOD_KEY = "ltlight_finetune"
PREFIX = "backbone."


def drop_frozen_tensors(
    finetune: FineTuning | None, backbone: nn.Module, checkpoint: dict[str, Any]
) -> None:
    """Remove the frozen pretrained tensors from ``checkpoint["state_dict"]`` and record the
    base weights' identity, when the method froze them and the backbone knows its weights."""
    base = getattr(backbone, BASE_KEY, None)
    if finetune is None or not finetune.frozen_names or base is None:
        return
    state = checkpoint["state_dict"]
    for name in finetune.frozen_names:
        state.pop(PREFIX + name, None)
    checkpoint[BASE_KEY] = base.to_dict()
    checkpoint[METHOD_KEY] = repr(finetune)


def restore_frozen_tensors(
    finetune: FineTuning | None, backbone: nn.Module, checkpoint: dict[str, Any]
) -> None:
    """Put the base weights' tensors back into a checkpoint that left them out.

    Raises:
        ValueError: the backbone has no pretrained weights, or other ones (the message names
            the checkpoint's and the backbone's), or the module has no fine-tuning method.
    """
    saved = checkpoint.get(BASE_KEY)
    if saved is None:
        return
    where = saved["file"] or "timm's hub weights"
    origin = f"{saved['model_name']} from {where}"
    if finetune is None:
        raise ValueError(
            f"the checkpoint holds only the tensors {checkpoint.get(METHOD_KEY)} trained on "
            f"{origin}: pass the same finetune= to the module"
        )
    base = getattr(backbone, BASE_KEY, None)
    if base is None:
        raise ValueError(
            f"the checkpoint holds only the fine-tuned tensors; its base weights are {origin} "
            f"(sha256 {saved['sha256']}), but this backbone was built without pretrained weights: "
            f"build it with timm_backbone({saved['model_name']!r}, checkpoint_path={where!r})"
        )
    same_hash = saved["sha256"] is None or base.sha256 is None or saved["sha256"] == base.sha256
    if base.model_name != saved["model_name"] or not same_hash:
        raise ValueError(
            f"the checkpoint was fine-tuned from {origin} (sha256 {saved['sha256']}), but the "
            f"backbone's weights are {base.describe()}, another file: pass "
            f"checkpoint_path={where!r}"
        )
    state = checkpoint["state_dict"]
    own = backbone.state_dict()
    for name in finetune.frozen_names:
        state.setdefault(PREFIX + name, own[name])
