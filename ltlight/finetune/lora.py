"""LoRA (Hu et al., ICLR 2022) through Hugging Face ``peft``: ``W x + (α / r) · B A x`` on the
named layers, ``A`` random and ``B`` zero, so training starts from the pretrained model.

``peft.inject_adapter_in_model`` wraps each target layer in place (its weight becomes
``<layer>.base_layer.weight``, the adapter ``<layer>.lora_A/B.default.weight``); the backbone stays
the same object, so timm's interface and ``pretrained_cfg`` are unchanged. Install with
``pip install ltlight[peft]``.
"""

from collections.abc import Iterable

from torch import nn

from ltlight.checks import check_integer, check_range
from ltlight.finetune.base import FineTuning


class LoRA(FineTuning):
    """Low-rank adapters on ``target_modules`` (peft's matching: a module whose name is, or ends
    with ``.`` + , a target); the classifier and the adapters train.

    Args:
        rank: ``r``, the adapters' rank, ≥ 1.
        alpha: ``α``; the update is scaled by ``α / r``.
        target_modules: names of the layers to adapt (timm ViTs: ``qkv``, ``proj``, ``fc1``,
            ``fc2``).
        dropout: dropout on the adapters' input, in [0, 1).
    """

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: list[str] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rank = check_integer("rank", rank, 1)
        self.alpha = check_range("alpha", alpha, 0.0, low_open=True)
        self.target_modules = list(target_modules) if target_modules is not None else ["qkv"]
        self.dropout = check_range("dropout", dropout, 0.0, 1.0, high_open=True)

    def not_applicable(self, backbone: nn.Module) -> str | None:
        if not self._targets(backbone):
            return f"no layer named {self.target_modules}"
        return None

    def _targets(self, backbone: nn.Module) -> list[str]:
        return [
            name
            for name, _ in backbone.named_modules()
            if any(name == t or name.endswith(f".{t}") for t in self.target_modules)
        ]

    def add_modules(self, backbone: nn.Module) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            target_modules=self.target_modules,
            lora_dropout=self.dropout,
        )
        inject_adapter_in_model(config, backbone)

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return [p for name, p in backbone.named_parameters() if "lora_" in name]

    def apply(self, backbone: nn.Module) -> nn.Module:
        """As :meth:`FineTuning.apply`; target_modules that match nothing name the layers that
        could be adapted."""
        if not self._targets(backbone):
            layers = sorted({_short(n) for n, m in backbone.named_modules() if _adaptable(m)})
            raise ValueError(
                f"LoRA target_modules {self.target_modules} match no layer of "
                f"{type(backbone).__name__}; its linear/conv layers are named: "
                f"{', '.join(layers[:12])}{', …' if len(layers) > 12 else ''}"
            )
        return super().apply(backbone)


def _adaptable(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, nn.Conv2d))


def _short(name: str) -> str:
    """The last part of a module name peft matches on (``mlp.fc1`` → ``fc1``; ``downsample.0``
    keeps its parent, a bare index says nothing)."""
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
