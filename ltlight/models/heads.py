"""Classifier heads, made in one place, and the head interface every ltlight backbone speaks.

timm's interface (``timm/models/resnet.py``): ``forward_features(x)`` gives the unpooled feature
map, ``forward_head(x, pre_logits=False)`` pools it and applies the classifier (or, with
``pre_logits``, returns the pooled features), ``get_classifier()`` is the last layer and
``reset_classifier(n)`` re-creates it for ``n`` classes. :class:`ClassifierHeadMixin` gives a
backbone all four from its ``forward_features`` and the name of its head attribute;
:func:`make_head` builds the head, a plain ``nn.Linear`` or the cosine :class:`NormedLinear`.
Decoupled training (cRT, LWS, τ-normalisation) reaches any backbone's classifier through
:func:`get_classifier`, which also finds a torchvision model's ``fc``.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.checks import check_integer, check_range


class NormedLinear(nn.Module):
    """Cosine logits ``z_j = <x / ‖x‖, w_j / ‖w_j‖>`` in ``[-1, 1]``, no bias.

    As in Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
    (NeurIPS 2019), official code ``models/resnet_cifar.py``: the weight is stored
    ``(in_features, out_features)`` (one column per class, the official layout, so official
    checkpoints load unchanged) and initialised ``uniform(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)``,
    i.e. every class column rescaled to unit norm. A loss with a scale (``LDAMLoss``'s ``s``)
    multiplies these cosines; the head itself never does unless given a ``scale`` (LIFT's cosine
    classifier, Shi et al., ICML 2024: ``s · cos`` with ``s = 25``, for losses without one).

    The product runs in float32 even under autocast: in bfloat16 a cosine carries ~3 significant
    digits, and ``s = 30`` would turn that into logit errors of order 0.1.

    Args:
        in_features: size of each input feature vector.
        out_features: number of classes.
        scale: the cosines are multiplied by it (1: plain cosines, the LDAM head).
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.in_features = check_integer("in_features", in_features, 1)
        self.out_features = check_integer("out_features", out_features, 1)
        self.scale = float(check_range("scale", scale, 0.0, low_open=True))
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), dim=-1)
            weight = F.normalize(self.weight.float(), dim=0)
            cosines = x @ weight
            return cosines if self.scale == 1.0 else self.scale * cosines

    def extra_repr(self) -> str:
        scale = "" if self.scale == 1.0 else f", scale={self.scale}"
        return f"in_features={self.in_features}, out_features={self.out_features}{scale}"


def make_head(
    in_features: int,
    num_classes: int,
    normed: bool = False,
    init: Callable[[Tensor], object] | None = None,
    scale: float = 1.0,
) -> nn.Module:
    """The classifier of a backbone: ``nn.Linear(in_features, num_classes)``, or with ``normed``
    the cosine :class:`NormedLinear` (which keeps its own official initialisation) with logit
    scale ``scale``; ``init``, if given, re-initialises a linear head's weight (the CIFAR ResNets'
    ``kaiming_normal_``)."""
    check_integer("num_classes", num_classes, 1)
    if normed:
        return NormedLinear(in_features, num_classes, scale)
    head = nn.Linear(in_features, num_classes)
    if init is not None:
        init(head.weight)
    return head


class ClassifierHeadMixin:
    """timm's head interface for a backbone that pools a feature map and classifies it.

    A backbone sets :attr:`head_name` (the attribute holding its classifier) and implements
    ``forward_features(x)`` (the unpooled ``(N, D, H, W)`` map); it gets ``forward``,
    ``forward_head``, ``get_classifier`` and ``reset_classifier`` from here. The pooling is
    global average pooling, adaptive, so any image size works.
    """

    #: Attribute name of the classifier (``linear`` in the CIFAR code, ``fc`` in torchvision's).
    head_name: str = "fc"
    #: Weight initialisation of a new linear head (``None``: PyTorch's default).
    head_init: Callable[[Tensor], object] | None = None

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the feature map; the pooled features with ``pre_logits``, else the logits."""
        pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return pooled if pre_logits else self.get_classifier()(pooled)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The head (timm's convention): ``nn.Linear`` or :class:`NormedLinear`."""
        return getattr(self, self.head_name)

    def reset_classifier(self, num_classes: int) -> None:
        """A new head of the same kind for ``num_classes`` classes (timm's convention)."""
        old = self.get_classifier()
        head = make_head(
            old.in_features, num_classes, isinstance(old, NormedLinear), type(self).head_init
        )
        weight = next(old.parameters())
        setattr(self, self.head_name, head.to(device=weight.device, dtype=weight.dtype))
        self.num_classes = num_classes


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
