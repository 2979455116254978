"""A small convolutional net for the 8×8 Digits-LT images: seconds per epoch on a laptop CPU."""

import torch.nn.functional as F
from torch import Tensor, nn

from ltlight.models.normed_linear import NormedLinear


class DigitsNet(nn.Module):
    """Three 3×3 conv–BN–ReLU layers (8×8 → 4×4 by one stride), global pooling, a linear head.

    Channels ``hidden → 2·hidden → 2·hidden``; about 56k parameters at ``hidden=32``. Not from a
    paper: a quick-start backbone whose head can be the same cosine :class:`NormedLinear` the CIFAR
    ResNets use, so every loss (LDAM included) runs on Digits-LT. Pooling is adaptive, so other
    small image sizes (28×28 Fashion-MNIST) work too.

    Args:
        num_classes: outputs of the head.
        in_channels: image channels (1 for the grey digits).
        hidden: channels of the first layer.
        normed: a :class:`NormedLinear` cosine head instead of ``nn.Linear``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        hidden: int = 32,
        normed: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_classes", num_classes),
            ("in_channels", in_channels),
            ("hidden", hidden),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.num_classes = num_classes
        width = 2 * hidden
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.linear: nn.Module = (
            NormedLinear(width, num_classes) if normed else nn.Linear(width, num_classes)
        )

    def features(self, x: Tensor) -> Tensor:
        """The pooled ``2·hidden``-dimensional features the head sees."""
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x))

    def get_classifier(self) -> nn.Module:
        """The head (timm's convention): ``nn.Linear`` or :class:`NormedLinear`."""
        return self.linear

    def reset_classifier(self, num_classes: int) -> None:
        """A new head of the same kind for ``num_classes`` classes (timm's convention)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        old = self.linear
        in_features = old.in_features
        head = NormedLinear if isinstance(old, NormedLinear) else nn.Linear
        self.linear = head(in_features, num_classes)
        weight = next(old.parameters())
        self.linear.to(device=weight.device, dtype=weight.dtype)
        self.num_classes = num_classes
