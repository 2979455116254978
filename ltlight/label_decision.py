"""Multi-label decisions: one temperature and one threshold per label, kept as buffers.

:class:`~ltlight.LongTailModule` owns one :class:`LabelDecision` (``module.label_decision``):
per-label temperature scaling ``p_c = σ(z_c / T_c)`` and the decision ``p_c ≥ t_c`` that says
which labels an image gets. Both are empty (``T = 1``, ``t = 0.5``) until fitted by
:class:`~ltlight.callbacks.ThresholdTuning` or set by hand; as buffers they move with ``.to()``
and live in every checkpoint (``label_decision.*`` keys); a checkpoint without them loads as
unfitted.
"""

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from ltlight.calibration import match_saved_shapes


def _per_label(name: str, values: Sequence[float] | Tensor, low_open: bool) -> Tensor:
    """``values`` as a 1-D float tensor; ``ValueError`` naming ``name`` unless finite and in
    ``(0, 1)`` (thresholds) or ``(0, ∞)`` (temperatures)."""
    tensor = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(
            f"{name} must be one value per label (1-D), got shape {tuple(tensor.shape)}"
        )
    allowed = (tensor > 0) & torch.isfinite(tensor) & ((tensor < 1) if not low_open else True)
    if not bool(torch.all(allowed)):
        bad = [(i, tensor[i].item()) for i in torch.nonzero(~allowed).flatten().tolist()]
        interval = "(0, 1)" if not low_open else "> 0 and finite"
        raise ValueError(f"{name} must be in {interval} per label, got (label, value) {bad[:5]}")
    return tensor


class LabelDecision(nn.Module):
    """``σ(z / T)`` per label and the decision ``p ≥ t`` per label.

    Example:
        >>> decision = LabelDecision()
        >>> decision.set_thresholds([0.3, 0.7])
        >>> decision.decide(torch.tensor([[0.5, 0.5]])).tolist()
        [[True, False]]
    """

    temperature: Tensor
    thresholds: Tensor
    #: The buffers and their values before anything is fitted (empty: T = 1, t = 0.5).
    unfitted: ClassVar = {
        "temperature": lambda: torch.zeros(0),
        "thresholds": lambda: torch.zeros(0),
    }

    def __init__(self) -> None:
        super().__init__()
        for name, unfitted in self.unfitted.items():
            self.register_buffer(name, unfitted())
        self.register_load_state_dict_pre_hook(match_saved_shapes)

    def set_thresholds(self, thresholds: Sequence[float] | Tensor | None) -> None:
        """One decision threshold per label, each in ``(0, 1)``; ``None``: 0.5 for all."""
        if thresholds is None:
            self.thresholds = torch.zeros(0, device=self.thresholds.device)
            return
        values = _per_label("thresholds", thresholds, low_open=False)
        self.thresholds = values.to(device=self.thresholds.device, dtype=torch.float32)

    def set_temperature(self, temperature: Sequence[float] | Tensor | None) -> None:
        """One temperature ``T_c > 0`` per label; ``None``: 1 for all."""
        if temperature is None:
            self.temperature = torch.zeros(0, device=self.temperature.device)
            return
        values = _per_label("temperature", temperature, low_open=True)
        self.temperature = values.to(device=self.temperature.device, dtype=torch.float32)

    def thresholds_for(self, num_labels: int) -> Tensor:
        """The thresholds, 0.5 for every label until fitted."""
        if self.thresholds.numel() == 0:
            return torch.full((num_labels,), 0.5, device=self.thresholds.device)
        if self.thresholds.numel() != num_labels:
            raise ValueError(
                f"the module has thresholds for {self.thresholds.numel()} labels, the logits have "
                f"{num_labels}"
            )
        return self.thresholds

    def forward(self, logits: Tensor) -> Tensor:
        """The label probabilities ``σ(z / T)`` (``T`` = 1 until fitted)."""
        if self.temperature.numel():
            logits = logits / self.temperature.to(logits.dtype)
        return torch.sigmoid(logits)

    def decide(self, probs: Tensor) -> Tensor:
        """``p_c ≥ t_c``: the labels each image gets (boolean ``(N, C)``)."""
        return probs >= self.thresholds_for(probs.shape[-1]).to(probs.dtype)
