"""Finding and replacing a backbone's last layer, the way timm and torchvision expose it.

timm's convention (``model.get_classifier()`` returns the last layer, ``reset_classifier(n)``
re-creates it for ``n`` classes) is what ltlight's backbones implement; torchvision's ResNets
have no such method but name the layer ``fc``. Decoupled training (cRT, LWS, τ-normalisation)
reaches the classifier only through :func:`get_classifier` / :func:`reset_classifier`.
"""

from torch import nn


def get_classifier(backbone: nn.Module) -> nn.Module:
    """The layer that maps features to logits: ``backbone.get_classifier()``, else ``.fc``.

    Raises:
        TypeError: the backbone has neither (the message says what to add).
    """
    getter = getattr(backbone, "get_classifier", None)
    if callable(getter):
        return getter()
    fc = getattr(backbone, "fc", None)
    if isinstance(fc, nn.Module):
        return fc
    raise TypeError(
        f"cannot find the classifier of {type(backbone).__name__}: give it a get_classifier() "
        "method returning its last layer (timm's convention) or name that layer `fc` "
        "(torchvision's)"
    )


def reset_classifier(backbone: nn.Module, num_classes: int) -> nn.Module:
    """Re-create the classifier for ``num_classes`` classes, freshly initialised; return it.

    ``backbone.reset_classifier(num_classes)`` if it has one, else a new ``nn.Linear`` in place
    of a torchvision ``fc`` (same ``in_features`` and bias).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    resetter = getattr(backbone, "reset_classifier", None)
    if callable(resetter):
        resetter(num_classes)
        return get_classifier(backbone)
    fc = get_classifier(backbone)
    if not isinstance(fc, nn.Linear):
        raise TypeError(
            f"cannot re-create {type(fc).__name__} of {type(backbone).__name__}: give the "
            "backbone a reset_classifier(num_classes) method"
        )
    new = nn.Linear(fc.in_features, num_classes, bias=fc.bias is not None)
    backbone.fc = new.to(device=fc.weight.device, dtype=fc.weight.dtype)
    return backbone.fc
