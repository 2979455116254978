"""torchvision's ImageNet ResNets (He et al., CVPR 2016; ResNeXt: Xie et al., CVPR 2017), randomly
initialised or from torchvision's ImageNet weights (``weights="IMAGENET1K_V2"``: torch hub's
cache, downloaded when online; or a local ``.pth`` of the same architecture), with the optional
cosine head LDAM uses — the backbones of the ImageNet-LT,
Places-LT and iNaturalist recipes: ResNet-50 (iNaturalist, ImageNet-LT), ResNeXt-50 32×4d
(ImageNet-LT in Kang et al., ICLR 2020) and ResNet-152 (Places-LT).

The network is torchvision's own ``ResNet`` (same modules, names and initialisation, so its
checkpoints load), with ``fc`` replaced by :class:`~ltlight.models.NormedLinear` when
``normed=True``, and timm's head interface (``forward_features``, ``forward_head``,
``get_classifier()``, ``reset_classifier(num_classes)``).
"""

from pathlib import Path

import torch
import torchvision
from torch import Tensor
from torchvision.models.resnet import Bottleneck, ResNet

from ltlight.checks import check_integer
from ltlight.models.heads import ClassifierHeadMixin, make_head


class ImageNetResNet(ClassifierHeadMixin, ResNet):
    """torchvision's bottleneck ``ResNet`` with an optional cosine head and timm's head methods.

    Args:
        layers: bottleneck blocks per stage (``[3, 4, 6, 3]`` for ResNet-50).
        num_classes: size of the head, ≥ 1.
        groups: grouped-convolution groups (ResNeXt's cardinality, 32 for ResNeXt-50 32×4d).
        width_per_group: channels per group (4 for ResNeXt-50 32×4d, 64 for ResNet).
        normed: a :class:`NormedLinear` (cosine) head instead of ``nn.Linear``.
        zero_init_residual: torchvision's option: zero the last BN γ of every block.
    """

    def __init__(
        self,
        layers: list[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        normed: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        check_integer("num_classes", num_classes, 1)
        super().__init__(
            Bottleneck,
            layers,
            num_classes=num_classes,
            zero_init_residual=zero_init_residual,
            groups=groups,
            width_per_group=width_per_group,
        )
        self.num_classes = num_classes
        if normed:
            self.fc = make_head(self.fc.in_features, num_classes, normed=True)

    def forward_features(self, x: Tensor) -> Tensor:
        """The ``(N, 2048, H/32, W/32)`` feature map before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_torchvision_weights(model: ImageNetResNet, enum_name: str, weights: str) -> None:
    """Copy ImageNet weights into ``model``: ``weights`` is a member of torchvision's
    ``enum_name`` (``"IMAGENET1K_V2"``, from torch hub's cache, ``$TORCH_HOME/hub/checkpoints``)
    or the path of a local ``.pth``. The 1,000-class ``fc`` is kept only when the model has the
    same plain linear head; otherwise the head stays new.

    Raises:
        ValueError: an unknown weights name (the names that exist are listed), or a file whose
            tensors do not fit (named).
        FileNotFoundError: no local file at ``weights``.
        RuntimeError: the weights are not cached and cannot be downloaded.
    """
    if weights.endswith((".pth", ".pt")) or "/" in weights:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights: no file at {weights}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        state = _torchvision_state_dict(enum_name, weights)
    own = model.state_dict()
    if own["fc.weight"].shape != state.get("fc.weight", torch.empty(0)).shape:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own_body = {k: v for k, v in own.items() if not k.startswith("fc.")}
    missing = sorted(set(own_body) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not k.startswith("fc."))
    other = [k for k in own_body if k in state and state[k].shape != own_body[k].shape]
    if missing or unexpected or other:
        raise ValueError(
            f"weights: {weights} does not fit {enum_name.split('_')[0]}: keys missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}, of another shape {other[:3]}"
        )
    model.load_state_dict(state, strict=False)


def _torchvision_state_dict(enum_name: str, weights: str) -> dict[str, Tensor]:
    enum = getattr(torchvision.models, enum_name)
    if weights not in enum.__members__:
        raise ValueError(f"weights must be one of {', '.join(enum.__members__)}, got {weights!r}")
    member = enum[weights]
    try:
        return member.get_state_dict(progress=False, check_hash=True)
    except OSError as error:  # urllib's URLError is an OSError
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
        raise RuntimeError(
            f"weights: {enum_name}.{weights} is not in torch hub's cache ({cache}) and cannot be "
            f"downloaded ({type(error).__name__}): put the file there, or pass weights=<a local "
            ".pth>"
        ) from None


def _build(
    layers: list[int], enum_name: str, weights: str | None, **kwargs: object
) -> ImageNetResNet:
    model = ImageNetResNet(layers, **kwargs)
    if weights is not None:
        load_torchvision_weights(model, enum_name, weights)
    return model


def resnet50(
    num_classes: int = 1000, normed: bool = False, weights: str | None = None
) -> ImageNetResNet:
    """ResNet-50 (25.6M parameters with 1,000 classes); ``weights``: ``None`` (random),
    ``"IMAGENET1K_V1"``/``"IMAGENET1K_V2"`` or a local ``.pth`` (:func:`load_torchvision_weights`).
    """
    return _build([3, 4, 6, 3], "ResNet50_Weights", weights, num_classes=num_classes, normed=normed)


def resnext50_32x4d(
    num_classes: int = 1000, normed: bool = False, weights: str | None = None
) -> ImageNetResNet:
    """ResNeXt-50 32×4d (25.0M parameters with 1,000 classes); ``weights`` as :func:`resnet50`."""
    return _build(
        [3, 4, 6, 3],
        "ResNeXt50_32X4D_Weights",
        weights,
        num_classes=num_classes,
        groups=32,
        width_per_group=4,
        normed=normed,
    )


def resnet152(
    num_classes: int = 1000, normed: bool = False, weights: str | None = None
) -> ImageNetResNet:
    """ResNet-152 (60.2M parameters with 1,000 classes); ``weights`` as :func:`resnet50`."""
    return _build(
        [3, 8, 36, 3], "ResNet152_Weights", weights, num_classes=num_classes, normed=normed
    )
