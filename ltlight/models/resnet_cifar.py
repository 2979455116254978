"""The CIFAR ResNet-20/32/44/56 of He et al. (CVPR 2016, §4.2), as in the official LDAM-DRW code.

Three stages of ``n`` basic blocks with 16, 32 and 64 channels (depth ``6n + 2``), a 3×3 stem,
global average pooling and a linear head. Down-sampling shortcuts are the paper's *option A*:
a parameter-free strided identity whose missing channels are zero-padded, so ResNet-32 has the
0.46M parameters the paper reports (torchvision-style 1×1 projections would add more).
Weights of every conv and linear layer are ``kaiming_normal_`` (fan-in), BatchNorm is at its
defaults, as in ``models/resnet_cifar.py`` of github.com/kaidic/LDAM-DRW. Module names match
that file (``conv1``, ``bn1``, ``layer1..3``, ``linear``), so its checkpoints load.

Deviations, none changing a 32×32 forward pass: ``in_channels`` is an argument (1 for
Fashion-MNIST), and the pooling is adaptive, so other image sizes work too.
"""

import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.checks import check_integer
from ltlight.models.heads import ClassifierHeadMixin, make_head


class OptionAShortcut(nn.Module):
    """He et al.'s option A: ``x[:, :, ::s, ::s]`` with zero channels padded on both sides.

    The official code pads ``planes // 4`` channels at each end, which is right for the only
    case it meets (channels doubled); this splits ``out_channels - in_channels`` the same way.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option-A shortcut cannot drop channels: in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_front = extra // 2
        self.pad_back = extra - extra // 2

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3×3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = OptionAShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(ClassifierHeadMixin, nn.Module):
    """ResNet for 32×32 images: stem, three stages of ``blocks_per_stage`` blocks, linear head.

    timm's head interface (:class:`~ltlight.models.heads.ClassifierHeadMixin`): the head is
    ``linear`` as in the official code; a new linear head is ``kaiming_normal_`` initialised.

    Args:
        blocks_per_stage: ``n`` in the paper; the depth is ``6n + 2`` (3 → ResNet-20, 5 → 32).
        num_classes: outputs of the head.
        in_channels: image channels (3 for CIFAR, 1 for grey images).
        normed: a :class:`NormedLinear` cosine head (for LDAM, official ``use_norm=True``)
            instead of ``nn.Linear``.
    """

    head_name = "linear"
    head_init = nn.init.kaiming_normal_

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        in_channels: int = 3,
        normed: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("blocks_per_stage", blocks_per_stage),
            ("num_classes", num_classes),
            ("in_channels", in_channels),
        ):
            check_integer(name, value, 1)
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(32, 64, blocks_per_stage, stride=2)
        self.linear = make_head(64, num_classes, normed)
        for module in self.modules():
            # NormedLinear keeps its own (official) initialisation.
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _make_stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """The ``(N, 64, H/4, W/4)`` feature map before pooling."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(out)))


def resnet20(num_classes: int = 10, in_channels: int = 3, normed: bool = False) -> CifarResNet:
    """ResNet-20 (0.27M parameters with 10 classes)."""
    return CifarResNet(3, num_classes=num_classes, in_channels=in_channels, normed=normed)


def resnet32(num_classes: int = 10, in_channels: int = 3, normed: bool = False) -> CifarResNet:
    """ResNet-32 (0.46M parameters with 10 classes), the LDAM-DRW paper's CIFAR backbone."""
    return CifarResNet(5, num_classes=num_classes, in_channels=in_channels, normed=normed)


def resnet44(num_classes: int = 10, in_channels: int = 3, normed: bool = False) -> CifarResNet:
    """ResNet-44 (0.66M parameters with 10 classes)."""
    return CifarResNet(7, num_classes=num_classes, in_channels=in_channels, normed=normed)


def resnet56(num_classes: int = 10, in_channels: int = 3, normed: bool = False) -> CifarResNet:
    """ResNet-56 (0.85M parameters with 10 classes)."""
    return CifarResNet(9, num_classes=num_classes, in_channels=in_channels, normed=normed)
