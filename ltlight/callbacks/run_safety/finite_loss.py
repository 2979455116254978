"""StopOnNonFiniteLoss: a training loss that turns NaN or ±inf stops the run with a clear error.

A loss that diverges otherwise trains on to the end, overwrites the good checkpoints with NaN
weights and exits 0. Checking every step would cost a host-device sync per step; this callback
keeps the step's loss on the device and looks at the values since the last check once every
``check_every_n_steps`` batches (by default the trainer's ``log_every_n_steps``, when the logger
syncs anyway) and at the last batch of every epoch — before validation, so the epoch's
checkpoint is never saved with broken weights. The error names the epoch, the batch and the
global step where the loss first stopped being finite, and the last checkpoint saved before.

A loss can stay finite while the weights are not (BatchNorm's running variance overflows first:
training normalises with the batch's statistics, not the running ones). So every checkpoint is
checked before it is written: one with a NaN or infinite tensor is not saved, and the run stops
naming that tensor. Only a checkpoint whose tensors are all finite is ever named.
"""

import math
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from ltlight.checks import check_integer

_ADVICE = (
    "Lower the learning rate, check the data for NaN/inf, or use a smaller loss scale (s, γ) "
    "and run again."
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError` once the training loss is NaN or infinite.

    :class:`~ltlight.LongTailModule` adds one to every run (``configure_callbacks``) unless the
    trainer already has one.

    Args:
        check_every_n_steps: look at the losses every this many training batches (>= 1);
            ``None``: the trainer's ``log_every_n_steps``. The last batch of an epoch is always
            checked.

    Raises:
        NonFiniteLossError: during training, naming the epoch, batch and global step.

    Example:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[StopOnNonFiniteLoss(check_every_n_steps=10)])
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        super().__init__()
        self.check_every_n_steps = check_integer(
            "check_every_n_steps", check_every_n_steps, 1, optional=True
        )
        self._pending: list[tuple[int, int, int, Tensor]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = []

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor):
            return
        step = trainer.global_step
        self._pending.append((trainer.current_epoch, batch_idx, step, loss.detach().reshape(())))
        every = self.check_every_n_steps or max(int(trainer.log_every_n_steps), 1)
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        if len(self._pending) >= every or last_of_epoch:
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, []
        values = torch.stack([loss for *_, loss in pending]).float().cpu().tolist()  # one sync
        for (epoch, batch_idx, step, _), value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the training loss became {value} at epoch {epoch}, batch {batch_idx} "
                    f"(global step {step}); training stopped. {self._last_checkpoint(trainer)} "
                    f"{_ADVICE}"
                )

    @staticmethod
    def _last_checkpoint(trainer: L.Trainer) -> str:
        saved = [
            path
            for callback in trainer.checkpoint_callbacks
            if isinstance(callback, ModelCheckpoint)
            for path in (callback.last_model_path, callback.best_model_path)
            if path and os.path.isfile(path)
        ]
        if not saved:
            return "No checkpoint was saved before it."
        for path in sorted(set(saved), key=os.path.getmtime, reverse=True):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            except Exception:  # unreadable: not one to name
                continue
            if non_finite_tensor(state) is None:
                return f"The last checkpoint from before it is {path}."
        return "No checkpoint with finite weights was saved before it."

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        broken = non_finite_tensor(checkpoint.get("state_dict") or {})
        if broken is not None:
            raise NonFiniteLossError(
                f"the weights became non-finite by epoch {trainer.current_epoch} (global step "
                f"{trainer.global_step}): {broken} holds NaN or inf, so this checkpoint was not "
                f"saved; training stopped. {self._last_checkpoint(trainer)} {_ADVICE}"
            )


def non_finite_tensor(state_dict: dict[str, Any]) -> str | None:
    """The name of the first floating-point tensor of ``state_dict`` holding NaN or ±inf, if any
    (one host sync for all of them)."""
    names = [k for k, v in state_dict.items() if isinstance(v, Tensor) and v.is_floating_point()]
    if not names:
        return None
    finite = torch.stack([torch.isfinite(state_dict[name]).all() for name in names]).cpu()
    return None if bool(finite.all()) else names[int((~finite).nonzero()[0])]
