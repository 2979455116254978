"""The optimisation recipe of LDAM-DRW (Cao et al., NeurIPS 2019) on CIFAR-LT.

SGD with momentum 0.9, learning rate 0.1, weight decay 2e-4; the learning rate rises linearly over
the first 5 epochs, then drops ×0.01 at epoch 160 and ×0.0001 at epoch 180 (200 epochs in all).
Both are reachable from YAML (``optimizer: ltlight.optim.paper_sgd`` or ``torch.optim.SGD`` with
its arguments, and ``lr_scheduler: {class_path: ltlight.optim.WarmupMultiStepLR}``).
"""

from collections.abc import Iterable, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def paper_sgd(params: Iterable) -> torch.optim.SGD:
    """SGD(lr=0.1, momentum=0.9, weight_decay=2e-4): the paper's CIFAR optimiser."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4)


class WarmupMultiStepLR(LRScheduler):
    """Linear warm-up, then multiplicative steps; stepped once per epoch.

    Epoch ``e`` (counting from 0) uses ``base_lr · (e + 1) / warmup_epochs`` while
    ``e < warmup_epochs``, then ``base_lr · gamma^k`` with ``k`` the number of milestones ``<= e``
    — the official ``adjust_learning_rate`` of LDAM-DRW with the defaults (5, [160, 180], 0.01).

    Args:
        optimizer: the wrapped optimiser.
        warmup_epochs: epochs of linear warm-up (``>= 0``; 0 disables it).
        milestones: epochs at which the rate is multiplied by ``gamma`` (increasing, ``>= 0``).
        gamma: the factor at each milestone, in ``(0, 1]``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int = 5,
        milestones: Sequence[int] = (160, 180),
        gamma: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        milestones = [int(m) for m in milestones]
        if any(m < 0 for m in milestones) or milestones != sorted(set(milestones)):
            raise ValueError(
                f"milestones must be strictly increasing epochs >= 0, got {list(milestones)}"
            )
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.warmup_epochs = warmup_epochs
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate at ``epoch``."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(epoch >= m for m in self.milestones)

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]
