"""TextInitialisedClassifier: at the start of ``fit``, the classifier becomes the class names'
CLIP text features (LIFT's initialisation; :mod:`ltlight.models.text_classifier` says how)."""

from collections.abc import Sequence

import lightning as L
from typing_extensions import override

from ltlight.models.text_classifier import DEFAULT_TEMPLATE, init_classifier_from_text


class TextInitialisedClassifier(L.Callback):
    """Initialise the module's classifier from the class names' CLIP text features.

    Runs in ``on_fit_start`` — after the datamodule's ``setup`` (its ``class_names`` are read)
    and the checkpoint's restore, before the sanity check and the first step — on every rank
    alike (the features are a pure function of the weights and the names; the parameters change
    in place, so the optimiser keeps them). A run resumed from a checkpoint
    (``trainer.ckpt_path``, known only from this hook on) keeps the checkpoint's classifier and
    loads no CLIP model. Put it in the module's ``callbacks`` (the method's) or the trainer's.

    Args:
        model_name: the open_clip architecture of the image backbone's CLIP
            (``"ViT-B-16-quickgelu"`` for OpenAI's ViT-B/16, as timm's
            ``vit_base_patch16_clip_quickgelu_224.openai``).
        pretrained: an open_clip tag (``"openai"``; the hub cache, ``HF_HUB_OFFLINE`` respected)
            or a local weights file.
        template: the prompt, ``{}`` the class name (LIFT: ``"a photo of a {}."``).
        class_names: the names in class-index order, when the datamodule's are not words (a
            list); ``None``: the datamodule's ``class_names`` (WordNet ids become ImageNet's
            names).

    Raises:
        ValueError: no class names, or a number other than the classifier's classes.

    Example:
        >>> TextInitialisedClassifier("ViT-B-16-quickgelu", pretrained="openai")
        TextInitialisedClassifier(model_name='ViT-B-16-quickgelu', pretrained='openai')
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None = None,
        template: str = DEFAULT_TEMPLATE,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if "{}" not in template:
            raise ValueError(f"template must contain {{}} for the class name, got {template!r}")
        self.model_name = model_name
        self.pretrained = pretrained
        self.template = template
        self.class_names = list(class_names) if class_names is not None else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_name={self.model_name!r}, pretrained={self.pretrained!r})"
        )

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            return
        names = self.class_names
        if names is None:
            names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        backbone = getattr(pl_module, "backbone", pl_module)
        init_classifier_from_text(
            backbone, list(names or []), self.model_name, self.pretrained, self.template
        )
