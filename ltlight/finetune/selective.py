"""Fine-tuning a chosen subset of the pretrained parameters: the classifier only (linear probe),
the biases (BitFit: Ben Zaken et al., ACL 2022) or the LayerNorm affine parameters (LayerNorm
tuning: Zhao et al., ICLR 2024)."""

from collections.abc import Iterable

from torch import nn

from ltlight.finetune.base import FineTuning


class LinearProbe(FineTuning):
    """Only the classifier trains; the pretrained features are fixed."""


class BitFit(FineTuning):
    """The classifier and every bias (``*.bias``) train (Ben Zaken et al., ACL 2022)."""

    def not_applicable(self, backbone: nn.Module) -> str | None:
        if not any(name.endswith("bias") for name, _ in backbone.named_parameters()):
            return "it has no bias parameters"
        return None

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return [p for name, p in backbone.named_parameters() if name.endswith("bias")]


class LayerNormTuning(FineTuning):
    """The classifier and the affine ``γ, β`` of every ``nn.LayerNorm`` train (Zhao et al.,
    "Tuning LayerNorm in Attention", ICLR 2024)."""

    def not_applicable(self, backbone: nn.Module) -> str | None:
        if not any(isinstance(m, nn.LayerNorm) for m in backbone.modules()):
            return "it has no LayerNorm"
        return None

    def select(self, backbone: nn.Module) -> Iterable[nn.Parameter]:
        return [
            p for m in backbone.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()
        ]
