"""A small convolutional net for the 8×8 Digits-LT images: seconds per epoch on a laptop CPU."""

from torch import Tensor, nn

from ltlight.checks import check_integer
from ltlight.models.heads import ClassifierHeadMixin, make_head


class DigitsNet(ClassifierHeadMixin, nn.Module):
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

    head_name = "linear"

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
            check_integer(name, value, 1)
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
        self.linear = make_head(width, num_classes, normed)

    def forward_features(self, x: Tensor) -> Tensor:
        """The ``(N, 2·hidden, H/2, W/2)`` feature map before pooling."""
        return self.body(x)
