"""torchvision's ImageNet ResNets (He et al., CVPR 2016; ResNeXt: Xie et al., CVPR 2017), randomly
initialised, with the optional cosine head LDAM uses — the backbones of the ImageNet-LT,
Places-LT and iNaturalist recipes: ResNet-50 (iNaturalist, ImageNet-LT), ResNeXt-50 32×4d
(ImageNet-LT in Kang et al., ICLR 2020) and ResNet-152 (Places-LT).

The network is torchvision's own ``ResNet`` (same modules, names and initialisation, so its
checkpoints load), with ``fc`` replaced by :class:`~ltlight.models.NormedLinear` when
``normed=True``, and timm's head interface (``forward_features``, ``forward_head``,
``get_classifier()``, ``reset_classifier(num_classes)``).
"""

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


def resnet50(num_classes: int = 1000, normed: bool = False) -> ImageNetResNet:
    """ResNet-50 (25.6M parameters with 1,000 classes), random initialisation."""
    return ImageNetResNet([3, 4, 6, 3], num_classes=num_classes, normed=normed)


def resnext50_32x4d(num_classes: int = 1000, normed: bool = False) -> ImageNetResNet:
    """ResNeXt-50 32×4d (25.0M parameters with 1,000 classes), random initialisation."""
    return ImageNetResNet(
        [3, 4, 6, 3], num_classes=num_classes, groups=32, width_per_group=4, normed=normed
    )


def resnet152(num_classes: int = 1000, normed: bool = False) -> ImageNetResNet:
    """ResNet-152 (60.2M parameters with 1,000 classes), random initialisation."""
    return ImageNetResNet([3, 8, 36, 3], num_classes=num_classes, normed=normed)
