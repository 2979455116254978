"""The optimisation recipe of LDAM-DRW (Cao et al., NeurIPS 2019) on CIFAR-LT.

SGD with momentum 0.9, learning rate 0.1, weight decay 2e-4; the learning rate rises linearly over
the first 5 epochs, then drops ×0.01 at epoch 160 and ×0.0001 at epoch 180 (200 epochs in all).
Both are reachable from YAML (``optimizer: ltlight.optim.paper_sgd`` or ``torch.optim.SGD`` with
its arguments, and ``lr_scheduler: {class_path: ltlight.optim.WarmupMultiStepLR}``).
"""

import math
from collections.abc import Iterable, Sequence

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ltlight._lightning_internals import remember_last_lr
from ltlight.epochs import check_before_end, check_epoch, resolve_epoch


def paper_sgd(params: Iterable) -> torch.optim.SGD:
    """SGD(lr=0.1, momentum=0.9, weight_decay=2e-4): the paper's CIFAR optimiser."""
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=2e-4)


class _EpochFactorLR(LRScheduler):
    """A schedule ``base_lr · factor(epoch)`` whose epochs may resolve once the run's length is
    known (:meth:`set_max_epochs`); subclasses write :meth:`factor`."""

    def factor(self, epoch: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]

    def _apply_current_lr(self) -> None:
        """Set the optimiser's rates for the current epoch (after its epochs were resolved)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        remember_last_lr(self)


class WarmupMultiStepLR(_EpochFactorLR):
    """Linear warm-up, then multiplicative steps; stepped once per epoch.

    Epoch ``e`` (counting from 0) uses ``base_lr · (e + 1) / warmup_epochs`` while
    ``e < warmup_epochs``, then ``base_lr · gamma^k`` with ``k`` the number of milestones ``<= e``
    — the official ``adjust_learning_rate`` of LDAM-DRW with the defaults (5, [160, 180], 0.01),
    i.e. milestones ``[0.8, 0.9]`` of a 200-epoch run.

    Every epoch argument is an epoch (``int``) or a fraction of the run (``float`` in [0, 1]);
    :class:`~ltlight.LongTailModule` calls :meth:`set_max_epochs` with ``trainer.max_epochs``,
    which resolves fractions (``floor(f · max_epochs)``) and refuses a milestone at or after the
    end of training, so a config says the run's length once.

    Args:
        optimizer: the wrapped optimiser.
        warmup_epochs: epochs of linear warm-up (``>= 0``; 0 disables it), or a fraction.
        milestones: epochs or fractions at which the rate is multiplied by ``gamma``
            (increasing once resolved; two that resolve to one epoch multiply it by ``gamma²``).
        gamma: the factor at each milestone, in ``(0, 1]``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int | float = 5,
        milestones: Sequence[int | float] = (0.8, 0.9),
        gamma: float = 0.01,
        last_epoch: int = -1,
    ) -> None:
        check_epoch("warmup_epochs", warmup_epochs)
        milestones = list(milestones)
        for milestone in milestones:
            check_epoch("milestones", milestone)
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.warmup = warmup_epochs
        self.milestone_arguments = milestones
        self.gamma = gamma
        self.max_epochs: int | None = None
        self._resolve(None)
        super().__init__(optimizer, last_epoch)

    def _resolve(self, max_epochs: int | None) -> None:
        if max_epochs is None and any(
            isinstance(m, float) for m in [self.warmup, *self.milestone_arguments]
        ):
            # not resolvable yet: no step before set_max_epochs (epoch 0 is warm-up or base rate)
            self.warmup_epochs = 0 if isinstance(self.warmup, float) else self.warmup
            self.milestones = [m for m in self.milestone_arguments if isinstance(m, int)]
            return
        self.warmup_epochs = resolve_epoch("warmup_epochs", self.warmup, max_epochs)
        milestones = [resolve_epoch("milestones", m, max_epochs) for m in self.milestone_arguments]
        if milestones != sorted(milestones):  # equal ones (a short run) multiply by gamma twice
            raise ValueError(
                f"milestones must be increasing, got {self.milestone_arguments}"
                + (f" = epochs {milestones} of max_epochs={max_epochs}" if max_epochs else "")
            )
        for given, epoch in zip(self.milestone_arguments, milestones, strict=True):
            check_before_end("WarmupMultiStepLR", "milestones", given, epoch, max_epochs)
        self.milestones = milestones

    def set_max_epochs(self, max_epochs: int | None) -> None:
        """Resolve fractions against the run's length and check every milestone lies inside it."""
        self.max_epochs = max_epochs
        self._resolve(max_epochs)
        self._apply_current_lr()

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate at ``epoch``."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        return self.gamma ** sum(epoch >= m for m in self.milestones)


class WarmupCosineLR(_EpochFactorLR):
    """Linear warm-up, then cosine decay to ``min_lr_ratio · base_lr`` at the end of the run.

    Epoch ``e`` uses ``base_lr · (e + 1) / warmup_epochs`` while ``e < warmup_epochs``, then
    ``base_lr · (r + (1 − r)·(1 + cos(π (e − w) / (T − w))) / 2)`` with ``w`` the warm-up,
    ``r = min_lr_ratio`` and ``T`` the run's length: without warm-up this is
    ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=r·base_lr)`` (Loshchilov &
    Hutter, "SGDR", ICLR 2017; Kang et al., ICLR 2020, use it on ImageNet-LT). ``T`` is not an
    argument: :class:`~ltlight.LongTailModule` calls :meth:`set_max_epochs` with
    ``trainer.max_epochs``, so a config says the run's length once.

    Args:
        optimizer: the wrapped optimiser.
        warmup_epochs: epochs of linear warm-up (``>= 0``), or a fraction of the run.
        min_lr_ratio: the final rate as a fraction of the base rate, in ``[0, 1]``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int | float = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        check_epoch("warmup_epochs", warmup_epochs)
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.warmup = warmup_epochs
        self.min_lr_ratio = min_lr_ratio
        self.max_epochs: int | None = None
        self.warmup_epochs = 0 if isinstance(warmup_epochs, float) else warmup_epochs
        super().__init__(optimizer, last_epoch)

    def set_max_epochs(self, max_epochs: int | None) -> None:
        """The run's length ``T`` (``trainer.max_epochs``); fractions resolve against it."""
        if max_epochs is None or max_epochs < 1:
            raise ValueError(
                f"WarmupCosineLR decays over the run, but the trainer has no max_epochs "
                f"(got {max_epochs}): set trainer.max_epochs"
            )
        self.max_epochs = max_epochs
        self.warmup_epochs = resolve_epoch("warmup_epochs", self.warmup, max_epochs)
        check_before_end(
            "WarmupCosineLR", "warmup_epochs", self.warmup, self.warmup_epochs, max_epochs
        )
        self._apply_current_lr()

    def factor(self, epoch: int) -> float:
        """The multiplier of the base learning rate at ``epoch``."""
        if epoch < self.warmup_epochs:
            return (epoch + 1) / self.warmup_epochs
        if self.max_epochs is None:
            return 1.0  # not started: the module sets the run's length before the first step
        span = self.max_epochs - self.warmup_epochs
        cosine = (1 + math.cos(math.pi * (epoch - self.warmup_epochs) / span)) / 2
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * cosine
