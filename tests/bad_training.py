"""Training that goes wrong on purpose, for the tests of ``ltlight``'s errors.

Usable from the command line as ``--model.init_args.loss=bad_training.<Name>`` while ``tests/``
is importable.
"""

import torch
from torch import Tensor

from ltlight.losses import CrossEntropyLoss


class NaNFromBatch(CrossEntropyLoss):
    """Cross-entropy whose value turns NaN from the ``batch``-th training call on (0-based)."""

    def __init__(self, batch: int = 13) -> None:
        super().__init__()
        self.batch = batch
        self.calls = 0

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = super().forward(logits, target)
        if not self.training:
            return loss
        self.calls += 1
        return loss * torch.nan if self.calls > self.batch else loss
