"""Pretrained backbones through timm: any timm model, its weights from the hub or a local file.

:func:`timm_backbone` returns timm's own model (so ``pretrained_cfg``, ``forward_features``,
``forward_head(x, pre_logits=False)``, ``get_classifier()`` and ``reset_classifier(n)`` are timm's)
with a new classifier for ``num_classes``: ``nn.Linear`` or ltlight's cosine
:class:`~ltlight.models.NormedLinear`. A local ``checkpoint_path`` goes through timm's
``pretrained_cfg_overlay=dict(file=...)``, so timm's per-architecture key filter and
position-embedding resampling apply; since timm only warns about keys that do not fit, the file is
checked here and any missing, unexpected or other-shape tensor is an error naming them.

The weights' identity (:class:`BaseWeights`: model name, file, SHA-256) is kept on the model as
``model.ltlight_base_weights``: a fine-tuned checkpoint stores it instead of the frozen tensors
(:mod:`ltlight.finetune`).
"""

import difflib
import hashlib
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from torch import nn

from ltlight.models.heads import make_head

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class BaseWeights:
    """Where a backbone's pretrained weights came from: enough to find and check them again."""

    model_name: str
    #: The local file, or ``None`` for timm's hub weights.
    file: str | None
    #: SHA-256 of the file's bytes (``None`` when the hub file is not in the cache).
    sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = self.file if self.file is not None else "timm's hub weights"
        digest = f", sha256 {self.sha256[:12]}…" if self.sha256 else ""
        return f"{self.model_name} from {where}{digest}"


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read in 16 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 24):
            digest.update(piece)
    return digest.hexdigest()


def timm_backbone(
    model_name: str,
    num_classes: int,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    head: Literal["linear", "cosine"] = "linear",
    head_scale: float = 1.0,
    create_kwargs: dict[str, Any] | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """A timm model with a new ``num_classes`` classifier, from pretrained weights if asked.

    Args:
        model_name: any name ``timm.list_models()`` knows, with an optional pretrained tag
            (``vit_base_patch16_clip_224.openai``).
        num_classes: size of the new classifier, ≥ 1 (a file's head of another size is dropped,
            as timm does).
        pretrained: timm's weights for ``model_name`` from the Hugging Face hub (its cache;
            ``HF_HUB_OFFLINE=1`` is respected).
        checkpoint_path: a local ``.safetensors`` / ``.pth`` / ``.bin`` of this architecture
            (implies pretrained weights; no download).
        head: ``"linear"`` (timm's own) or ``"cosine"`` (:class:`~ltlight.models.NormedLinear`).
        head_scale: the cosine head's logit scale ``s`` (LIFT: 25); 1 for a linear head.
        create_kwargs: keyword arguments of ``timm.create_model`` as one mapping: the form a
            YAML config uses (``create_kwargs: {img_size: 384, drop_path_rate: 0.1}``).
        **model_kwargs: passed to ``timm.create_model`` (``img_size``, ``in_chans``,
            ``drop_path_rate``, ``depth``, ...), with ``create_kwargs``.

    Raises:
        ValueError: an unknown model name (the closest names are listed), a head that is neither
            kind, a scale on a linear head, or weights that do not fit the architecture.
        FileNotFoundError: no file at ``checkpoint_path``.
        RuntimeError: ``pretrained=True`` offline without the weights in the cache.

    Example:
        >>> model = timm_backbone("test_resnet", num_classes=3, head="cosine", head_scale=16.0)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 3])
    """
    check_model_name(model_name)
    # jsonargparse reads timm.create_model's own keywords through **model_kwargs and passes them
    # with their defaults (None): only the ones given reach timm
    given = {**(create_kwargs or {}), **model_kwargs}
    model_kwargs = {k: v for k, v in given.items() if v is not None}
    if head not in ("linear", "cosine"):
        raise ValueError(f"head must be 'linear' or 'cosine', got {head!r}")
    if head == "linear" and head_scale != 1.0:
        raise ValueError(
            f"head_scale applies to head='cosine' only, got {head_scale} with 'linear'"
        )
    if checkpoint_path is not None:
        model, base = _from_file(model_name, num_classes, checkpoint_path, model_kwargs)
    elif pretrained:
        model, base = _from_hub(model_name, num_classes, model_kwargs)
    else:
        model = timm.create_model(model_name, num_classes=num_classes, **model_kwargs)
        base = None
    if head == "cosine":
        _replace_classifier(model, num_classes, head_scale)
    model.ltlight_base_weights = base
    return model


def check_model_name(model_name: str) -> None:
    """A ``ValueError`` listing the closest names when timm does not know ``model_name``."""
    architecture = model_name.split(".", 1)[0]
    if timm.is_model(architecture):
        return
    close = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.6)
    hint = f"closest: {', '.join(close)}" if close else "see timm.list_models()"
    raise ValueError(f"model_name: timm has no model {model_name!r} ({hint})")


def _from_file(
    model_name: str, num_classes: int, path: str, model_kwargs: dict[str, Any]
) -> tuple[nn.Module, BaseWeights]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint_path: no weights file at {path}")
    if file.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(
            f"checkpoint_path: {path} must end in one of {', '.join(WEIGHT_SUFFIXES)}, "
            f"got {file.suffix or 'no suffix'!r}"
        )
    try:
        saved = timm.models.load_state_dict(str(file), weights_only=True)
    except Exception as error:  # safetensors, zip and pickle readers each raise their own kind
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ValueError(
            f"checkpoint_path: {path} is truncated or not a weights file "
            f"({type(error).__name__}: {first_line})"
        ) from None
    overlay = model_kwargs.pop("pretrained_cfg_overlay", None) or {}
    try:
        model = timm.create_model(
            model_name,
            num_classes=num_classes,
            pretrained=True,
            pretrained_cfg_overlay={**overlay, "file": str(file)},
            **model_kwargs,
        )
    except RuntimeError:  # torch's load_state_dict: tensors of another shape, one per line
        model = timm.create_model(model_name, num_classes=num_classes, **model_kwargs)
        check_weights_fit(model, saved, path)
        raise
    check_weights_fit(model, saved, path)
    return model, BaseWeights(model_name, str(file.resolve()), file_sha256(file))


def check_weights_fit(model: nn.Module, saved: dict[str, torch.Tensor], path: str) -> None:
    """A ``ValueError`` naming the tensors of ``saved`` (after timm's key filter for the model's
    architecture) that are missing, unexpected or of another shape; the classifier may differ."""
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        saved = filter_fn(dict(saved), model)
    classifier = model.pretrained_cfg.get("classifier") or ()
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)

    def is_head(key: str) -> bool:
        return any(key == c or key.startswith(f"{c}.") for c in classifier)

    own = {k: v for k, v in model.state_dict().items() if not is_head(k)}
    saved = {k: v for k, v in saved.items() if not is_head(k)}
    problems = []
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    other_shape = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in saved and saved[k].shape != v.shape
    ]
    for what, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            problems.append(
                f"{len(names)} {what} ({', '.join(names[:4])}{', …' * (len(names) > 4)})"
            )
    if other_shape:
        listed = ", ".join(other_shape[:3]) + (", …" if len(other_shape) > 3 else "")
        problems.append(f"{len(other_shape)} of another shape (file vs model: {listed})")
    if problems:
        raise ValueError(
            f"checkpoint_path: {path} does not fit {type(model).__name__} "
            f"({model.pretrained_cfg.get('architecture')}): keys {'; '.join(problems)}"
        )


def _from_hub(
    model_name: str, num_classes: int, model_kwargs: dict[str, Any]
) -> tuple[nn.Module, BaseWeights]:
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        model = timm.create_model(
            model_name, num_classes=num_classes, pretrained=True, **model_kwargs
        )
    except (LocalEntryNotFoundError, OSError) as error:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        reason = "the hub is offline (HF_HUB_OFFLINE)" if offline else type(error).__name__
        raise RuntimeError(
            f"timm_backbone: no pretrained weights for {model_name!r} in the hub cache and "
            f"{reason}: download them once online, or pass "
            f"checkpoint_path=<a local .safetensors/.pth/.bin of {model_name}>"
        ) from None
    return model, BaseWeights(model_name, None, _hub_file_sha256(model.pretrained_cfg))


def _hub_file_sha256(pretrained_cfg: dict[str, Any]) -> str | None:
    """SHA-256 of the cached hub file timm loaded, when it can be found."""
    from huggingface_hub import try_to_load_from_cache

    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        return None
    for filename in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return file_sha256(cached)
    return None


def _replace_classifier(model: nn.Module, num_classes: int, scale: float) -> None:
    """Put a cosine head where timm's classifier is (found by identity, so any attribute path)."""
    classifier = model.get_classifier()
    if not isinstance(classifier, nn.Linear):
        raise ValueError(
            f"head='cosine' needs a linear classifier to replace; {type(model).__name__}'s is "
            f"{type(classifier).__name__}"
        )
    name = next(n for n, m in model.named_modules() if m is classifier)
    cosine = make_head(classifier.in_features, num_classes, normed=True, scale=scale)
    model.set_submodule(name, cosine.to(classifier.weight.device, classifier.weight.dtype))
