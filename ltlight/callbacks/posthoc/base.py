"""What the post-hoc callbacks share: when they run, the validation outputs they fit on, refusing
to fit on the test split, metrics before and after, and saving what they fitted.

A post-hoc callback fits something small (a temperature, a τ) on the *validation* split and stores
it in the module (buffers or the classifier's weights, so checkpoints carry it and
:meth:`~ltlight.LongTailModule.predict_proba` uses it). It runs

* at the end of training (``on_train_end``: the model is still on its device), after which every
  ``ModelCheckpoint``'s ``last`` checkpoint (and, without a monitored quantity, its newest one:
  the same model) is written again, now with the fitted values. A ``best`` checkpoint selected
  on a monitored quantity is another model and is left alone: calibrate it with ``test``;
* at the start of ``validate`` / ``test`` / ``predict`` of a model it has not fitted yet — a
  checkpoint trained without it is calibrated in one command, e.g.
  ``ltlight test --config <config> --ckpt_path <old.ckpt>
  --trainer.callbacks+=ltlight.callbacks.TemperatureScaling
  --trainer.callbacks.save_path=<calibrated.ckpt>``.

ltlight's datamodules with ``val_per_class = 0`` validate on the test split: fitting there would
tune on the test set, so the callbacks refuse. A user's own datamodule's ``val_dataloader`` is
taken at its word.
"""

import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import move_data_to_device
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor
from torchmetrics.utilities.distributed import gather_all_tensors

from ltlight.metrics import SCALAR_KEYS, long_tail_metrics


def tau_grid(high: float, step: float = 0.05) -> tuple[float, ...]:
    """The values ``0, step, …, high`` searched on the validation split for a post-hoc ``τ``."""
    return tuple(round(step * i, 10) for i in range(round(high / step) + 1))


def validation_loader(trainer: L.Trainer, who: str) -> Any:
    """The trainer's validation loader, refusing one that serves the test split."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and getattr(datamodule, "validates_on_test", False):
        raise ValueError(
            f"{who} fits on the validation split, but {type(datamodule).__name__} has "
            f"val_per_class=0: its validation split is the test split, and fitting there would "
            "tune on the test set. Set data.init_args.val_per_class to a number > 0 (a balanced "
            "validation split carved from the training pool)"
        )
    if datamodule is not None and hasattr(datamodule, "val_dataloader"):
        loader = datamodule.val_dataloader()
    else:
        loader = trainer.val_dataloaders
    if loader is None or loader == []:
        raise ValueError(
            f"{who} needs a validation split: give the datamodule a val_dataloader "
            "(ltlight's: data.init_args.val_per_class > 0)"
        )
    return loader


@torch.no_grad()
def collect_outputs(
    trainer: L.Trainer,
    pl_module: L.LightningModule,
    loader: Any,
    features_of: torch.nn.Module | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Raw logits ``(N, C)`` and targets ``(N,)`` of ``loader`` (float64 / int64, on the CPU);
    with ``features_of``, also the inputs of that layer (the classifier's features)."""
    loaders = loader if isinstance(loader, (list, tuple)) else [loader]
    device = trainer.strategy.root_device
    if trainer.world_size > 1:
        _broadcast_buffers(pl_module)
    was_training = pl_module.training
    pl_module.eval()
    logits, targets, features = [], [], []
    handle = None
    if features_of is not None:
        handle = features_of.register_forward_hook(
            lambda module, inputs, output: features.append(inputs[0].detach().double().cpu())
        )
    try:
        for one in loaders:
            for batch in one:
                images, target = move_data_to_device(batch, device)[:2]
                logits.append(pl_module(images).detach().double().cpu())
                targets.append(target.detach().cpu())
    finally:
        if handle is not None:
            handle.remove()
        pl_module.train(was_training)
    all_logits, all_targets = torch.cat(logits), torch.cat(targets)
    all_features = torch.cat(features) if features_of is not None else None
    if trainer.world_size > 1:  # every rank fits on the whole split
        all_logits, all_targets = _gather(all_logits, device), _gather(all_targets, device)
        if all_features is not None:
            all_features = _gather(all_features, device)
    return all_logits, all_targets, all_features


def _broadcast_buffers(pl_module: L.LightningModule) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), as DDP does before a training
    forward: after the last step each rank holds statistics updated by its own batch, and this
    forward bypasses DDP. Every rank then evaluates the model rank 0 saves in checkpoints."""
    for buffer in pl_module.buffers():
        if buffer.numel():
            torch.distributed.broadcast(buffer, src=0)


def _gather(x: Tensor, device: torch.device) -> Tensor:
    """``x`` of every rank, concatenated on the CPU. Evaluation shards are not padded, so their
    lengths differ by up to one image per rank: torchmetrics' gather pads and trims them
    (Lightning's ``all_gather`` needs equal shapes)."""
    return torch.cat([part.cpu() for part in gather_all_tensors(x.to(device))])


def evaluate(pl_module: L.LightningModule, probs: Tensor, target: Tensor) -> dict[str, float]:
    """The scalar long-tail metrics of ``probs`` (the module's shot thresholds and bins)."""
    results = long_tail_metrics(
        probs.float(),
        target,
        probs.shape[1],
        class_counts=pl_module.class_counts,
        many_threshold=pl_module.many_shot_threshold,
        few_threshold=pl_module.few_shot_threshold,
        n_bins=pl_module.ece_bins,
    )
    return {key: float(results[key]) for key in SCALAR_KEYS}


class PostHocCallback(L.Callback):
    """Base class: subclasses implement :meth:`is_fitted` and :meth:`fit`.

    Args:
        save_path: where to write the calibrated checkpoint when calibrating at the start of
            ``validate`` / ``test`` / ``predict`` (``None``: not written); a relative path is in
            the trainer's ``default_root_dir``, the run's folder under ``ltlight``. After
            training, the ``last`` checkpoints of the trainer's ``ModelCheckpoint`` callbacks
            are rewritten.
    """

    #: The metrics key prefix, e.g. ``posthoc/temperature_scaling``.
    name: str = "posthoc"
    #: Whether it fits multi-label models (the softmax calibrations do not).
    multi_label: bool = False

    def __init__(self, save_path: str | None = None) -> None:
        self.save_path = save_path
        #: Scalar validation metrics before and after the last fit (for tables and tests).
        self.metrics_before: dict[str, float] = {}
        self.metrics_after: dict[str, float] = {}

    # -- what subclasses write ----------------------------------------------------------------
    def is_fitted(self, pl_module: L.LightningModule) -> bool:
        raise NotImplementedError

    def fit(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any) -> str:
        """Fit on ``loader``, store the result in ``pl_module``; return a one-line summary."""
        raise NotImplementedError

    # -- hooks ----------------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for attribute in ("adjusted_logits", "calibration"):
            if not hasattr(pl_module, attribute):
                raise TypeError(
                    f"{type(self).__name__} calibrates an ltlight.LongTailModule, got "
                    f"{type(pl_module).__name__} without `{attribute}`"
                )
        if stage == "fit":  # refuse before training, not after hours of it
            validation_loader(trainer, type(self).__name__)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.calibrate(trainer, pl_module)
        for callback in trainer.checkpoint_callbacks:
            paths = {getattr(callback, "last_model_path", "")}
            if getattr(callback, "monitor", "") is None:  # its newest file is this model
                paths.add(getattr(callback, "best_model_path", ""))
            for path in sorted(p for p in paths if p):
                trainer.save_checkpoint(path, weights_only=False)

    def _calibrate_if_new(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.is_fitted(pl_module):
            return
        self.calibrate(trainer, pl_module)
        if self.save_path is not None:  # a relative path: in the run's folder
            path = os.path.join(trainer.default_root_dir, self.save_path)
            trainer.save_checkpoint(path, weights_only=False)  # the whole state, as fit's
            rank_zero_info(f"{type(self).__name__}: calibrated checkpoint saved to {path}")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._calibrate_if_new(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._calibrate_if_new(trainer, pl_module)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._calibrate_if_new(trainer, pl_module)

    @staticmethod
    def _validation_metrics(
        trainer: L.Trainer, pl_module: L.LightningModule, loader: Any
    ) -> dict[str, float]:
        logits, target, _ = collect_outputs(trainer, pl_module, loader)
        probs = pl_module.predict_proba(logits.to(pl_module.device)).cpu()
        return evaluate(pl_module, probs, target)

    # -- the shared routine -----------------------------------------------------------------
    def calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fit on the validation split, log the metrics before and after."""
        loader = validation_loader(trainer, type(self).__name__)
        if getattr(pl_module, "multi_label", False) and not self.multi_label:
            raise ValueError(
                f"{type(self).__name__} calibrates a softmax over the classes, but the module "
                "trains multi-label data (independent sigmoids): use "
                "ltlight.callbacks.ThresholdTuning(fit_temperature=True) for per-label "
                "temperatures and thresholds"
            )
        self.metrics_before = self._validation_metrics(trainer, pl_module, loader)
        summary = self.fit(trainer, pl_module, loader)
        self.metrics_after = self._validation_metrics(trainer, pl_module, loader)
        payload = {
            f"{self.name}/{key}_{when}": value
            for when, metrics in (("before", self.metrics_before), ("after", self.metrics_after))
            for key, value in metrics.items()
        }
        for logger in trainer.loggers:
            logger.log_metrics(payload, step=trainer.global_step)
        rank_zero_info(self.describe(summary))

    def describe(self, summary: str) -> str:
        """The line printed after a fit: the summary, validation metrics before → after."""
        before, after = self.metrics_before, self.metrics_after
        return (
            f"{type(self).__name__}: {summary}; validation balanced error "
            f"{before['balanced_error']:.2%} → {after['balanced_error']:.2%}, ECE "
            f"{before['ece']:.2%} → {after['ece']:.2%}, NLL {before['nll']:.3f} → "
            f"{after['nll']:.3f}"
        )
