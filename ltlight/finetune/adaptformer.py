"""AdaptFormer (Chen et al., NeurIPS 2022) as LIFT uses it (Shi et al., "Long-Tail Learning with
Foundation Model: Heavy Fine-Tuning Hurts", ICML 2024, ``models/peft_modules.py``).

Each transformer block's MLP branch gets a parallel bottleneck adapter on the block's input
``x`` (after the attention residual)::

    x ← x + MLP(LN₂(x)) + s · W_up ReLU(W_down LN(x))

with its own LayerNorm and a learnt scalar ``s`` (1 at start). ``W_up`` and its bias start at
zero, so at step 0 the model is exactly the pretrained one. The adapter hangs off the block as
``<block>.adaptformer`` (the pretrained tensors keep their names) and joins the block's forward
through two hooks, on ``norm2`` (which sees ``x``) and on ``mlp`` (whose output it adds to).
In a timm block with LayerScale the adapter's output is scaled by ``ls2`` as the MLP's is.
"""

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ltlight.checks import check_integer
from ltlight.finetune.base import FineTuning


class Adapter(nn.Module):
    """``s · W_up ReLU(W_down LN(x))``, ``W_up = 0`` at start (LIFT's ``AdaptFormer`` module)."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.ones(1))
        nn.init.kaiming_normal_(self.down_proj.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)
        self._block_input: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.up_proj(torch.relu(self.down_proj(self.ln(x)))) * self.scale

    def remember_input(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        self._block_input = args[0]

    def add_to_mlp(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        x, self._block_input = self._block_input, None
        return output + self(x)


def transformer_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The blocks with an MLP branch after a ``norm2`` (timm's ViT, DeiT, EVA, Swin blocks)."""
    return [
        m
        for m in backbone.modules()
        if isinstance(getattr(m, "mlp", None), nn.Module)
        and isinstance(getattr(m, "norm2", None), nn.Module)
    ]


def lift_bottleneck(num_classes: int, depth: int) -> int:
    """LIFT's rule ``2^⌊log₂(C / (2 · depth))⌋``, at least 1 (fewer classes than ``2 · depth``
    would give a fraction)."""
    return 2 ** max(0, int(math.log2(num_classes / (2 * depth))))


class AdaptFormer(FineTuning):
    """A bottleneck adapter beside every transformer block's MLP; adapters and classifier train.

    Args:
        bottleneck: the adapters' hidden width; ``None``: LIFT's rule
            ``2^⌊log₂(C / (2 · depth))⌋`` (:func:`lift_bottleneck`; C the backbone's
            ``num_classes``, depth its number of blocks; 32 for ImageNet-LT on ViT-B/16).

    Example:
        >>> from ltlight.finetune import parameter_counts
        >>> from ltlight.models import timm_backbone
        >>> backbone = AdaptFormer(bottleneck=8).apply(timm_backbone("test_vit", num_classes=3))
        >>> # 6 blocks × (LayerNorm 128 + down 520 + up 576 + scale 1) + classifier 195
        >>> parameter_counts(backbone)
        (7545, 313785)
    """

    def __init__(self, bottleneck: int | None = None) -> None:
        super().__init__()
        self.bottleneck = check_integer("bottleneck", bottleneck, 1, optional=True)

    def not_applicable(self, backbone: nn.Module) -> str | None:
        if not transformer_blocks(backbone):
            return "it has no transformer blocks with `mlp` and `norm2`"
        return None

    def add_modules(self, backbone: nn.Module) -> None:
        blocks = transformer_blocks(backbone)
        bottleneck = self.bottleneck or lift_bottleneck(int(backbone.num_classes), len(blocks))
        for block in blocks:
            dim = block.mlp.fc1.in_features if hasattr(block.mlp, "fc1") else _width(block.norm2)
            weight = next(block.parameters())
            block.adaptformer = Adapter(dim, bottleneck).to(weight.device, weight.dtype)
            block.norm2.register_forward_pre_hook(block.adaptformer.remember_input)
            block.mlp.register_forward_hook(block.adaptformer.add_to_mlp)

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return [p for block in transformer_blocks(backbone) for p in block.adaptformer.parameters()]


def _width(norm: nn.Module) -> int:
    return int(norm.normalized_shape[0])
