"""A cosine-similarity classifier head, the one LDAM's official code uses with ``s = 30``."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NormedLinear(nn.Module):
    """Cosine logits ``z_j = <x / ‖x‖, w_j / ‖w_j‖>`` in ``[-1, 1]``, no bias.

    As in Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss"
    (NeurIPS 2019), official code ``models/resnet_cifar.py``: the weight is stored
    ``(in_features, out_features)`` (one column per class, the official layout, so official
    checkpoints load unchanged) and initialised ``uniform(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)``,
    i.e. every class column rescaled to unit norm. A loss with a scale (``LDAMLoss``'s ``s``)
    multiplies these cosines; the head itself never does.

    The product runs in float32 even under autocast: in bfloat16 a cosine carries ~3 significant
    digits, and ``s = 30`` would turn that into logit errors of order 0.1.

    Args:
        in_features: size of each input feature vector.
        out_features: number of classes.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features must be >= 1, got {in_features} and {out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = F.normalize(x.float(), dim=-1)
            weight = F.normalize(self.weight.float(), dim=0)
            return x @ weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
