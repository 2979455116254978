"""A tiny CLIP registered with open_clip and saved to a local file: LIFT's text-initialised head
runs on it here (the real weights cannot be downloaded), through open_clip's real loading path."""

import json
import os

import open_clip
import torch


def write_tiny_clip(folder: str, name: str, vision_width: int, embed_dim: int = 32) -> str:
    """Register ``name`` (a one-layer CLIP: image tower ``vision_width`` wide, joint space
    ``embed_dim``) with open_clip and save its seeded random weights; returns the file."""
    config = {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": vision_width, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                     "layers": 1},
    }  # fmt: skip
    config_file = os.path.join(folder, f"{name}.json")
    with open(config_file, "w") as file:
        json.dump(config, file)
    open_clip.add_model_config(config_file)
    torch.manual_seed(0)
    path = os.path.join(folder, f"{name}.pt")
    torch.save(open_clip.create_model(name).state_dict(), path)
    return path


def reference_text_weights(name: str, path: str, names: list[str], project: bool) -> torch.Tensor:
    """LIFT's ``init_head_text_feat`` written again in float64: normalise(encode_text(prompt)),
    then (``project``) normalise(t · Pᵀ) with the image projection ``P``."""
    model = open_clip.create_model(name, pretrained=path).double().eval()
    tokens = open_clip.get_tokenizer(name)([f"a photo of a {n}." for n in names])
    with torch.no_grad():
        text = model.encode_text(tokens)
    text = text / text.norm(dim=-1, keepdim=True)
    if not project:
        return text
    mapped = text @ model.visual.proj.t()
    return mapped / mapped.norm(dim=-1, keepdim=True)


def text_init_arguments(model_name: str, path: str) -> list[str]:
    """The command-line arguments that point the LIFT config's text initialisation (the method's
    last callback) at a tiny CLIP file."""
    callback = "--model.init_args.callbacks.init_args"
    return [f"{callback}.model_name={model_name}", f"{callback}.pretrained={path}"]
