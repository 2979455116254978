"""A classifier initialised from the class names' CLIP text features (LIFT's semantic-aware
initialisation; Shi et al., "Long-Tail Learning with Foundation Model: Heavy Fine-Tuning Hurts",
ICML 2024, official code shijxcs/LIFT ``trainer.py::init_head_text_feat``).

Each class ``j`` gets the text feature ``t_j = normalise(encode_text("a photo of a {name_j}."))``
of open_clip's text tower. The text features live in CLIP's joint space (``embed_dim``, 512 for
ViT-B/16); a CLIP ViT's image features before its projection live in the tower's own width (768),
where LIFT's head sits: there ``w_j = normalise(t_j · Pᵀ)`` with ``P`` the image tower's
projection ``(width, embed_dim)`` (``x_joint = x · P``). A head whose input already is the joint
space (CLIP's ResNets, whose attention pool projects) takes ``t_j`` as it is. The classifier —
the cosine :class:`~ltlight.models.NormedLinear` (or a linear one, bias zero) — gets one ``w_j``
per class.

open_clip is the optional extra ``ltlight[clip]``; weights come from its hub tags
(``pretrained="openai"``, cache respected) or a local file (``pretrained="/path/ViT-B-16.pt"``).
"""

import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.models.heads import NormedLinear, get_classifier

#: LIFT's prompt (``cfg.prompt == "default"``).
DEFAULT_TEMPLATE = "a photo of a {}."
_WNID = re.compile(r"^n\d{8}$")


def readable_class_names(class_names: Sequence[str]) -> list[str]:
    """Names a text tower can read: WordNet ids (ImageNet-LT's folders) become ImageNet's first
    description (timm's ``ImageNetInfo``: ``n01440764`` → ``tench``; an id ImageNet-1k lacks
    stays); a Places-style
    ``a/airfield`` loses its letter folder; ``_`` and ``/`` become spaces (as LIFT does)."""
    names = [str(name) for name in class_names]
    if names and all(_WNID.match(name) for name in names):
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        known = set(info.label_names())
        names = [
            info.label_name_to_description(name).split(",")[0] if name in known else name
            for name in names
        ]
    return [re.sub(r"^[a-z]/", "", name).replace("_", " ").replace("/", " ") for name in names]


def load_open_clip(model_name: str, pretrained: str | None) -> nn.Module:
    """open_clip's ``create_model(model_name, pretrained=...)``; a local file or a hub tag.

    Raises:
        ImportError: open_clip is not installed (says which extra brings it).
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        RuntimeError: the weights cannot be loaded (one line naming the model and the remedy).
    """
    try:
        import open_clip
    except ImportError as error:
        raise ImportError(
            "the text-initialised classifier needs open_clip: pip install 'ltlight[clip]'"
        ) from error
    looks_like_file = pretrained is not None and (
        os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    )
    if looks_like_file and not os.path.isfile(pretrained):
        raise FileNotFoundError(f"pretrained={pretrained!r}: no such file (CLIP {model_name})")
    try:
        return open_clip.create_model(model_name, pretrained=pretrained).eval()
    except Exception as error:  # hub / file errors: one line, not a stack of them
        raise RuntimeError(
            f"cannot load open_clip model {model_name!r} with pretrained={pretrained!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "offline, pass pretrained=<path to the weights file>"
        ) from None


def warn_unless_clip_image_tower(backbone: nn.Module, model_name: str) -> None:
    """Warn when a timm backbone's weights are not a CLIP image tower's (neither its architecture
    nor its pretrained tag names CLIP): the text features would then land in a space the image
    features do not share, which no error catches when the widths happen to agree (ConvNeXt-T
    and ViT-B/16 are both 768 wide)."""
    cfg = getattr(backbone, "pretrained_cfg", None)
    if not isinstance(cfg, dict):
        return  # not a timm model: nothing says what its weights are
    names = " ".join(str(cfg.get(key) or "") for key in ("architecture", "tag", "hf_hub_id"))
    if "clip" not in names.lower():
        described = ".".join(str(cfg.get(key)) for key in ("architecture", "tag") if cfg.get(key))
        warnings.warn(
            f"the text-initialised classifier puts CLIP {model_name}'s text features into the "
            f"head of {described or 'this backbone'}, which is not a CLIP image tower: its "
            "features live in another space (use the CLIP model of the backbone's weights, or "
            "leave the callback out: --model.init_args.callbacks=[])",
            stacklevel=2,
        )


@torch.no_grad()
def text_features(
    clip_model: nn.Module,
    tokenizer: Any,
    class_names: Sequence[str],
    template: str = DEFAULT_TEMPLATE,
) -> Tensor:
    """``(C, embed_dim)`` unit-norm text features of ``template.format(name)``, float32."""
    prompts = [template.format(name) for name in class_names]
    device = next(clip_model.parameters()).device
    features = clip_model.encode_text(tokenizer(prompts).to(device)).float()
    return F.normalize(features, dim=-1)


def image_feature_weights(
    features: Tensor, projection: Tensor | None, in_features: int, model_name: str = "CLIP"
) -> Tensor:
    """Text features ``(C, E)`` mapped into a head's input space of size ``in_features``:
    unchanged when ``E == in_features`` (the joint space), else ``normalise(t · Pᵀ)`` with the
    image projection ``P`` ``(in_features, E)``.

    Raises:
        ValueError: neither fits (the message gives the sizes).
    """
    if features.shape[1] == in_features:
        return features
    if projection is not None and tuple(projection.shape) == (in_features, features.shape[1]):
        return F.normalize(features @ projection.float().t(), dim=-1)
    shape = None if projection is None else tuple(projection.shape)
    raise ValueError(
        f"the classifier takes {in_features} features, but {model_name}'s text features have "
        f"{features.shape[1]} and its image projection is {shape}: a CLIP image tower of the "
        "same model is needed"
    )


@torch.no_grad()
def set_classifier_weights(head: nn.Module, weights: Tensor) -> None:
    """Put one row ``weights[j]`` per class into ``head``: :class:`NormedLinear` (columns) or
    ``nn.Linear`` (rows, bias zero).

    Raises:
        ValueError: the head has another number of classes or inputs.
        TypeError: the head is neither kind.
    """
    if isinstance(head, NormedLinear):
        shape, target = (head.out_features, head.in_features), head.weight.T
    elif isinstance(head, nn.Linear):
        shape, target = tuple(head.weight.shape), head.weight
        if head.bias is not None:
            head.bias.zero_()
    else:
        raise TypeError(
            f"the text-initialised classifier sets a NormedLinear or nn.Linear head, got "
            f"{type(head).__name__}"
        )
    if tuple(weights.shape) != tuple(shape):
        raise ValueError(
            f"{weights.shape[0]} class names for a classifier of {shape[0]} classes "
            f"(weights {tuple(weights.shape)}, head {tuple(shape)})"
        )
    target.copy_(weights.to(target))


def init_classifier_from_text(
    backbone: nn.Module,
    class_names: Sequence[str],
    model_name: str,
    pretrained: str | None,
    template: str = DEFAULT_TEMPLATE,
) -> Tensor:
    """Set ``backbone``'s classifier (:func:`~ltlight.models.get_classifier`) to the class names'
    CLIP text features in its input space; returns those weights ``(C, in_features)``.

    Args:
        backbone: a model whose ``get_classifier()`` is a cosine or linear head.
        class_names: one name per class, in index order (made readable by
            :func:`readable_class_names`).
        model_name: the open_clip architecture (``"ViT-B-16"``, ``"ViT-B-16-quickgelu"``).
        pretrained: an open_clip tag (``"openai"``) or a local weights file.
        template: the prompt, ``{}`` the class name.

    Raises:
        ValueError: no class names, a class count other than the head's, or feature sizes that
            do not fit (one line each).
    """
    if not class_names:
        raise ValueError(
            "the text-initialised classifier needs class names: the datamodule has none "
            "(give the datamodule class_names, or class_names to TextInitialisedClassifier)"
        )
    warn_unless_clip_image_tower(backbone, model_name)
    head = get_classifier(backbone)
    classes = getattr(head, "out_features", None)
    if classes is not None and classes != len(class_names):
        raise ValueError(f"{len(class_names)} class names for a classifier of {classes} classes")
    import open_clip

    clip_model = load_open_clip(model_name, pretrained)
    names = readable_class_names(class_names)
    features = text_features(clip_model, open_clip.get_tokenizer(model_name), names, template)
    projection = getattr(getattr(clip_model, "visual", None), "proj", None)
    weights = image_feature_weights(features, projection, head.in_features, model_name)
    set_classifier_weights(head, weights)
    return weights
