"""Visual prompt tuning (Jia et al., ECCV 2022): ``length`` learnt tokens join a frozen ViT's
sequence after its class/register tokens — once, before the first block (shallow), or replaced by
a new set before every block (deep).

The prompts live in ``backbone.prompts`` and enter through hooks: on ``norm_pre`` (after the
position embedding, which the prompts do not get), on each block for deep prompts, and on the
final ``norm``, which drops them again, so timm's pooling (class token or average of the patch
tokens) sees the sequence it expects.
"""

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ltlight.checks import check_integer
from ltlight.finetune.base import FineTuning


class Prompts(nn.Module):
    """``(layers, length, dim)`` prompt tokens, uniform in ``±√(6 / (3 · patch² + dim))``
    (VPT's Xavier-style initialisation)."""

    def __init__(self, layers: int, length: int, dim: int, patch_area: int, prefix: int) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch_area + dim))
        self.tokens = nn.Parameter(torch.empty(layers, length, dim).uniform_(-bound, bound))
        self.prefix = prefix

    def insert(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        prompts = self.tokens[0].to(output.dtype).expand(output.shape[0], -1, -1)
        return torch.cat([output[:, : self.prefix], prompts, output[:, self.prefix :]], dim=1)

    def replace_hook(self, layer: int):
        def replace(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            x = args[0]
            prompts = self.tokens[layer].to(x.dtype).expand(x.shape[0], -1, -1)
            length = self.tokens.shape[1]
            end = self.prefix + length
            return (torch.cat([x[:, : self.prefix], prompts, x[:, end:]], dim=1), *args[1:])

        return replace

    def remove(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        end = self.prefix + self.tokens.shape[1]
        return torch.cat([output[:, : self.prefix], output[:, end:]], dim=1)


class VisualPromptTuning(FineTuning):
    """Learnt prompt tokens in a frozen ViT; prompts and classifier train.

    Args:
        length: prompt tokens per layer, ≥ 1 (VPT: 1 to 200; LIFT's VPT baseline: 10).
        deep: a new set of prompts before every block (VPT-deep) instead of once (VPT-shallow).
    """

    def __init__(self, length: int = 10, deep: bool = False) -> None:
        super().__init__()
        self.length = check_integer("length", length, 1)
        self.deep = bool(deep)

    def not_applicable(self, backbone: nn.Module) -> str | None:
        needed = ("blocks", "norm_pre", "norm", "num_prefix_tokens", "embed_dim", "patch_embed")
        missing = [name for name in needed if not hasattr(backbone, name)]
        if missing:
            return f"it is not a timm vision transformer (no {', '.join(missing)})"
        return None

    def add_modules(self, backbone: nn.Module) -> None:
        patch = backbone.patch_embed.patch_size
        blocks = list(backbone.blocks)
        weight = next(backbone.parameters())
        backbone.prompts = Prompts(
            len(blocks) if self.deep else 1,
            self.length,
            int(backbone.embed_dim),
            int(patch[0] * patch[1]),
            int(backbone.num_prefix_tokens),
        ).to(weight.device, weight.dtype)
        backbone.norm_pre.register_forward_hook(backbone.prompts.insert)
        if self.deep:
            for layer, block in enumerate(blocks[1:], start=1):
                block.register_forward_pre_hook(backbone.prompts.replace_hook(layer))
        backbone.norm.register_forward_hook(backbone.prompts.remove)

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return [backbone.prompts.tokens]
