"""LongTailModule: backbone → logits → a pluggable loss; long-tail metrics; optimiser and schedule.

Data flows one way: the datamodule hands over tensors and ``class_counts``; this module passes
the counts to its loss at setup; callbacks (DRW, DRS, γ schedules) reach the loss at
``module.loss`` and change its weight or parameters between epochs.
"""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ltlight._lightning_internals import hyperparameters_given_by_cli
from ltlight.calibration import PostHocCalibration
from ltlight.checkpoints import load_backbone_weights
from ltlight.checks import check_class_counts, check_integer, check_range
from ltlight.compiled import CompiledCall
from ltlight.finetune import FineTuning, parameter_counts
from ltlight.finetune.checkpoints import drop_frozen_tensors, restore_frozen_tensors
from ltlight.label_decision import LabelDecision
from ltlight.losses import CrossEntropyLoss
from ltlight.losses.base import float_logits
from ltlight.metrics import (
    MULTILABEL_SCALAR_KEYS,
    SCALAR_KEYS,
    LongTailMetrics,
    MultiLabelMetrics,
)
from ltlight.models.heads import get_classifier
from ltlight.optim import paper_sgd
from ltlight.preprocessing import Preprocessing

OptimizerFactory = Callable[[Iterable], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class LongTailModule(L.LightningModule):
    """A classifier trained with a long-tail loss, reporting per-class error and calibration.

    Args:
        backbone: the network mapping images to logits ``(N, C)``.
        loss: any :class:`~ltlight.losses.LongTailLoss` (or ``nn.Module`` with
            ``forward(logits, target)``); ``None`` means plain cross-entropy. Reached by callbacks
            at ``module.loss``.
        optimizer: ``params → Optimizer``; default: the paper's SGD (lr 0.1, momentum 0.9,
            weight decay 2e-4).
        lr_scheduler: ``optimizer → LRScheduler`` stepped once per epoch, or ``None``.
        num_classes: number of classes; only needed when the datamodule has no ``class_counts``
            or ``num_classes``.
        many_shot_threshold: classes with more training samples are "many-shot".
        few_shot_threshold: classes with fewer training samples are "few-shot".
        ece_bins: equal-width confidence bins of the expected calibration error.
        channels_last: run the backbone in the ``channels_last`` memory format (faster convolutions
            on GPUs with tensor cores).
        compile: run the backbone through ``torch.compile``
            (:class:`~ltlight.compiled.CompiledCall`: compiled at the first batch of each shape,
            on the module's device, static shapes; parameter names and checkpoints unchanged; a
            backbone that cannot compile runs eagerly with one warning). Off by default:
            compiling takes a while (tens of seconds for a ResNet-32 on the CPU, where it also
            needs a C++ compiler); the README's table says when it pays.
        callbacks: the method's schedule (DRW, DRS, a γ schedule): callbacks that belong to the
            method rather than to the run, merged into the trainer's by ``configure_callbacks``.
            A config then says a method in one place.
        init_weights: a checkpoint (``.ckpt`` of an ltlight run) whose *backbone weights* start
            this run — stage 2 of decoupled training; its trainer state (epoch, optimiser) is not
            used. Loaded at the start of ``fit``; a tensor that is missing or has another shape
            (another architecture or class count) is an error naming it.
        mixup_alpha: mixup (Zhang et al., ICLR 2018) of the training batches when > 0, as in
            MiSLAS's stage 1: ``x = λ·x + (1 − λ)·x[perm]``, loss ``λ·ℓ(z, y) + (1 − λ)·ℓ(z,
            y[perm])``, ``λ ~ Beta(α, α)`` drawn once per batch (NumPy's global generator, as
            the official code; checkpointed by :class:`~ltlight.callbacks.RNGState`). 0: off
            (MiSLAS: 1.0).
        finetune: a :mod:`ltlight.finetune` method applied to ``backbone`` here (adapters added,
            everything it does not train frozen); ``None``: every parameter trains as given.
            The trainable and total parameter counts are printed at the start of ``fit`` and
            logged; with a frozen base, checkpoints hold only the trained tensors and the base
            weights' identity (:mod:`ltlight.finetune.checkpoints`).

    Post-hoc calibration (set by :class:`~ltlight.callbacks.TemperatureScaling`,
    :class:`~ltlight.callbacks.PostHocLogitAdjustment`, or by hand) lives in
    ``module.calibration`` (:class:`~ltlight.calibration.PostHocCalibration`, saved with the
    checkpoint): ``temperature`` ``T`` (1.0 until fitted), ``logit_adjustment_tau`` ``τ`` (0.0
    until set) and the offset ``−τ·log π (+ log q)``. :meth:`predict_proba`, and so every metric
    and prediction, uses them: ``softmax((z − τ·log π + log q) / T)``.

    Multi-label data (a datamodule with ``multi_label = True``, or float targets ``(N, C)``:
    1 positive, 0 negative, NaN unknown — left out of the loss and the metrics) trains with a
    sigmoid loss; the probabilities are the label-wise sigmoids ``σ(z_c / T_c)`` and the metrics
    are :class:`~ltlight.metrics.MultiLabelMetrics` (``val/map``, ``val/head_map``, ...), F1 at
    the thresholds in ``module.label_decision`` (:class:`~ltlight.label_decision.LabelDecision`:
    per-label ``T`` and threshold, 1 and 0.5 until :class:`~ltlight.callbacks.ThresholdTuning`
    fits them; saved with the checkpoint).

    Every run gets :class:`~ltlight.callbacks.StopOnNonFiniteLoss` and
    :class:`~ltlight.callbacks.RNGState` (exact resume) unless the trainer has its own.

    Subclasses change one step by overriding :meth:`forward` (images → logits),
    :meth:`compute_loss` (logits, target → scalar) or :meth:`predict_proba` (logits →
    probabilities used by the metrics).

    Checkpoints made through ``ltlight fit`` re-create the whole module with
    ``LongTailModule.load_from_checkpoint(path)``; for a module built in Python, pass the same
    ``backbone`` (and ``loss``) again: they are not pickled into the checkpoint, so it loads with
    torch's safe ``weights_only=True``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        loss: nn.Module | None = None,
        optimizer: OptimizerFactory = paper_sgd,
        lr_scheduler: SchedulerFactory | None = None,
        num_classes: int | None = None,
        many_shot_threshold: int = 100,
        few_shot_threshold: int = 20,
        ece_bins: int = 15,
        channels_last: bool = False,
        compile: bool = False,
        callbacks: list[L.Callback] | None = None,
        init_weights: str | None = None,
        mixup_alpha: float = 0.0,
        finetune: FineTuning | None = None,
    ) -> None:
        super().__init__()
        check_range("mixup_alpha", mixup_alpha, 0.0)
        check_integer("num_classes", num_classes, 2, optional=True)
        check_integer("ece_bins", ece_bins, 1)
        if few_shot_threshold > many_shot_threshold:
            raise ValueError(
                f"few_shot_threshold ({few_shot_threshold}) must be <= many_shot_threshold "
                f"({many_shot_threshold})"
            )
        objects = ["backbone", "loss", "optimizer", "lr_scheduler", "callbacks", "finetune"]
        self.save_hyperparameters(ignore=None if hyperparameters_given_by_cli() else objects)
        self.finetune = finetune
        self.backbone = finetune.apply(backbone) if finetune is not None else backbone
        self.loss = loss if loss is not None else CrossEntropyLoss()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.num_classes = num_classes
        self.many_shot_threshold = many_shot_threshold
        self.few_shot_threshold = few_shot_threshold
        self.ece_bins = ece_bins
        self.channels_last = channels_last
        self.method_callbacks = list(callbacks or [])
        self.class_counts: list[int] | None = None
        #: The datamodule's evaluation preprocessing (set at set-up, saved in checkpoints).
        self.preprocessing: Preprocessing | None = None
        self.val_metrics: LongTailMetrics | MultiLabelMetrics | None = None
        self.test_metrics: LongTailMetrics | MultiLabelMetrics | None = None
        #: Multi-label data (float (N, C) targets): from the datamodule, the targets or the
        #: checkpoint.
        self.multi_label = False
        #: Per-label temperature and decision threshold (multi-label), saved in checkpoints.
        self.label_decision = LabelDecision()
        if channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        #: The compiled backbone (a plain object: its weights are the backbone's), or ``None``.
        self.compiled_backbone = CompiledCall(self.backbone) if compile else None
        self.init_weights = init_weights
        self.mixup_alpha = float(mixup_alpha)
        #: Post-hoc calibration (temperature, logit adjustment), saved in checkpoints.
        self.calibration = PostHocCalibration()
        #: LWS's per-class logit scale ``f`` (``z_j ← f_j · z_j``), created by
        #: :class:`~ltlight.callbacks.ClassifierRetraining`; ``None`` otherwise.
        self.class_scale: nn.Parameter | None = None
        #: The classifier's learning rate relative to the other trained parameters (MiSLAS's
        #: stage-2 ``lr_factor``); set by :class:`~ltlight.callbacks.ClassifierRetraining`.
        self.classifier_lr_factor = 1.0

    # -- set-up: class counts reach the loss and the metrics --------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self._attached_trainer(), "datamodule", None)
        counts = getattr(datamodule, "class_counts", None)
        loss_counts = getattr(self.loss, "class_counts", None)
        if counts is not None:
            counts = check_class_counts(counts).tolist()
            if loss_counts is not None and len(loss_counts) != len(counts):
                raise ValueError(
                    f"the loss has class_counts for {len(loss_counts)} classes but the datamodule "
                    f"has {len(counts)} classes"
                )
            if hasattr(self.loss, "set_class_counts"):
                self.loss.set_class_counts(counts)
        elif loss_counts is not None:
            counts = [int(c) for c in loss_counts]
        elif getattr(self.loss, "requires_class_counts", False):
            raise ValueError(
                f"{type(self.loss).__name__} needs the training class counts, but the datamodule "
                f"{type(datamodule).__name__ if datamodule else '(none)'} has no `class_counts`: "
                f"give the datamodule a `class_counts` attribute or pass `class_counts` to the loss"
            )
        self.class_counts = counts
        self.preprocessing = Preprocessing.from_datamodule(datamodule) or self.preprocessing
        self.multi_label = bool(getattr(datamodule, "multi_label", False)) or self.multi_label
        num_images = getattr(datamodule, "num_train_samples", None)
        if num_images is not None and hasattr(self.loss, "set_num_samples"):
            self.loss.set_num_samples(int(num_images))  # the DB loss's prior n_c / N

        if stage == "fit" and self.init_weights is not None:
            load_backbone_weights(self.backbone, self.init_weights, self._restore_frozen)

        num_classes = self._resolve_num_classes(datamodule, counts)
        if self.val_metrics is None:
            self.val_metrics = self._make_metrics(num_classes, counts)
            self.test_metrics = self._make_metrics(num_classes, counts)

    def train(self, mode: bool = True) -> "LongTailModule":
        super().train(mode)
        if mode and self.finetune is not None:
            self.finetune.set_train_mode(self.backbone)  # frozen BatchNorm keeps its statistics
        return self

    def on_fit_start(self) -> None:
        if self.finetune is None:
            return
        trainable, total = parameter_counts(self)
        rank_zero_info(
            f"{self.finetune!r} trains {trainable:,} of {total:,} parameters "
            f"({100 * trainable / total:.2f} %)"
        )
        counts = {"finetune/trainable_parameters": trainable, "finetune/total_parameters": total}
        for logger in self.loggers:
            logger.log_metrics(counts, step=0)

    def _attached_trainer(self) -> L.Trainer | None:
        try:
            return self.trainer
        except RuntimeError:  # Lightning's public answer for "not attached to a Trainer"
            return None

    def _resolve_num_classes(self, datamodule: Any, counts: Sequence[int] | None) -> int:
        candidates = {
            "num_classes (module argument)": self.num_classes,
            "datamodule.num_classes": getattr(datamodule, "num_classes", None),
            "len(class_counts)": len(counts) if counts is not None else None,
            "backbone.num_classes": getattr(self.backbone, "num_classes", None),
        }
        known = {name: int(n) for name, n in candidates.items() if n is not None}
        if not known:
            raise ValueError(
                "cannot tell the number of classes: pass num_classes to LongTailModule or use a "
                "datamodule with `num_classes` or `class_counts`"
            )
        if len(set(known.values())) > 1:
            described = ", ".join(f"{name}={n}" for name, n in known.items())
            raise ValueError(f"the number of classes disagrees: {described}")
        return next(iter(known.values()))

    def _make_metrics(
        self, num_classes: int, counts: Sequence[int] | None
    ) -> LongTailMetrics | MultiLabelMetrics:
        if self.multi_label:
            return MultiLabelMetrics(
                num_classes,
                counts,
                self.many_shot_threshold,
                self.few_shot_threshold,
                self.ece_bins,
            )
        return LongTailMetrics(
            num_classes,
            class_counts=counts,
            many_threshold=self.many_shot_threshold,
            few_threshold=self.few_shot_threshold,
            n_bins=self.ece_bins,
        )

    # -- the steps and the small methods they call ------------------------------------------
    def forward(self, images: Tensor) -> Tensor:
        """Images → logits ``(N, C)``; test-time crops ``(N, K, C, H, W)`` (the file datamodules'
        ``five_crop``) → the mean of the ``K`` crops' logits (LIFT's five-crop ensembling)."""
        if images.dim() == 5:
            return self(images.flatten(0, 1)).unflatten(0, images.shape[:2]).mean(dim=1)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        backbone = self.backbone if self.compiled_backbone is None else self.compiled_backbone
        logits = backbone(images)
        if self.class_scale is not None:
            logits = logits * self.class_scale
        return logits

    # -- post-hoc calibration (the state lives in ``self.calibration``) -------------------
    @property
    def temperature(self) -> float:
        """``T`` of temperature scaling (1.0 until fitted)."""
        return float(self.calibration.temperature)

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.calibration.set_temperature(value)

    @property
    def logit_adjustment_tau(self) -> float:
        """``τ`` of post-hoc logit adjustment (0.0 until set by :meth:`set_logit_adjustment`)."""
        return float(self.calibration.tau)

    def set_logit_adjustment(
        self, tau: float, target_prior: Sequence[float] | Tensor | None = None
    ) -> None:
        """Predict with ``z − τ·log π (+ log q)``: ``π`` the training class prior (the counts the
        module learnt at ``setup``), ``q`` a known test prior (Menon et al., ICLR 2021, eq. 9).
        ``τ = 0`` without ``q`` removes it. See :meth:`PostHocCalibration.set_logit_adjustment`.
        """
        self.calibration.set_logit_adjustment(tau, self.class_counts, target_prior)

    def predictive_logits(self, logits: Tensor) -> Tensor:
        """The loss's predictive logits (LDAM: ``s·z``; sigmoid losses: ``log σ(z)``)."""
        predictive = getattr(self.loss, "predictive_logits", None)
        return float_logits(logits if predictive is None else predictive(logits))

    def adjusted_logits(self, logits: Tensor) -> Tensor:
        """The predictive logits with the post-hoc logit adjustment, before ``T``."""
        # float64 stays float64 (fitting T, tests)
        return self.calibration.adjust(self.predictive_logits(logits))

    def compute_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Logits and class indices → the scalar loss that is minimised."""
        return self.loss(logits, target)

    def evaluation_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """``val/loss`` and ``test/loss``: the plain mean of the loss's unweighted per-sample
        values — no class weights (DRW sets them for training only), nothing an overridden
        :meth:`compute_loss` adds — so the figure compares across epochs and schedules. A loss
        without ``per_sample`` (any ``nn.Module``) is called as it is."""
        per_sample = getattr(self.loss, "per_sample", None)
        if per_sample is None:
            return self.loss(logits, target)
        values = per_sample(logits, target).float()
        if target.dim() == 2:  # multi-label: the mean over the known (not NaN) entries
            known = ~target.isnan()
            return torch.where(known, values, 0.0).sum() / known.sum()
        return values.mean()

    def predict_proba(self, logits: Tensor) -> Tensor:
        """The predictive distribution ``softmax((z' − τ·log π + log q) / T)``: ``z'`` the loss's
        predictive logits (LDAM: ``s·z``; sigmoid losses: ``log σ(z)``), then the post-hoc
        logit adjustment and temperature (identity until fitted). Multi-label: the label
        probabilities ``σ(z_c / T_c)``, per-label ``T`` from ``label_decision``."""
        if self.multi_label:
            label_logits = getattr(self.loss, "label_logits", None)
            z = logits if label_logits is None else label_logits(logits)
            return self.label_decision(float_logits(z))
        return torch.softmax(self.calibration(self.predictive_logits(logits)), dim=-1)

    @torch.no_grad()
    def predict_images(self, images: Tensor) -> Tensor:
        """Raw uint8 images ``(N, C, H, W)`` → the predictive probabilities ``(N, C)``.

        The images are resized and normalised as the datamodule's evaluation loader does (the
        :class:`~ltlight.preprocessing.Preprocessing` a checkpoint carries), the module is put in
        evaluation mode, and :meth:`predict_proba` applies any fitted temperature / logit
        adjustment.

        Raises:
            ValueError: the module never saw a datamodule with ``mean``/``std`` (train it, or
                load a checkpoint made by ``ltlight fit``, first), or the images are not uint8.
        """
        if self.preprocessing is None:
            raise ValueError(
                "predict_images needs the training data's preprocessing (mean, std, image size): "
                "load a checkpoint written by a run of this module, or set module.preprocessing"
            )
        self.eval()
        inputs = self.preprocessing(images.to(self.device))
        return self.predict_proba(self(inputs))

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        images, target = batch
        self._notice_multi_label(target)
        if self.mixup_alpha > 0:
            lam = float(np.random.beta(self.mixup_alpha, self.mixup_alpha))  # noqa: NPY002
            perm = torch.randperm(images.shape[0], device=images.device)
            logits = self(lam * images + (1 - lam) * images[perm])
            loss = lam * self.compute_loss(logits, target) + (1 - lam) * self.compute_loss(
                logits, target[perm]
            )
        else:
            loss = self.compute_loss(self(images), target)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_proba(self(images))

    def _notice_multi_label(self, target: Tensor) -> None:
        """Float ``(N, C)`` targets from a datamodule that did not say ``multi_label``: switch
        the probabilities and the metrics to multi-label (a shape check, no host sync)."""
        if target.dim() == 2 and target.is_floating_point() and not self.multi_label:
            self.multi_label = True
            for name in ("val_metrics", "test_metrics"):
                if getattr(self, name) is not None:
                    metrics = self._make_metrics(target.shape[1], self.class_counts)
                    setattr(self, name, metrics.to(self.device))

    def _evaluate(self, batch: Sequence[Tensor], metrics: LongTailMetrics, prefix: str) -> None:
        images, target = batch
        self._notice_multi_label(target)
        metrics = getattr(self, f"{prefix}_metrics")
        logits = self(images)
        self.log(f"{prefix}/loss", self.evaluation_loss(logits, target), sync_dist=True)
        metrics.update(self.predict_proba(logits), target)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def _log_metrics(self, metrics: LongTailMetrics | MultiLabelMetrics, prefix: str) -> None:
        if isinstance(metrics, MultiLabelMetrics):
            metrics.set_thresholds(self.label_decision.thresholds_for(metrics.num_labels))
            keys, grouped, main = MULTILABEL_SCALAR_KEYS, "_map", "map"
        else:
            keys, grouped, main = SCALAR_KEYS, "_shot_", "balanced_error"
        results = metrics.compute()
        for name in keys:
            if grouped in name and self.class_counts is None:
                continue  # shot groups need training counts
            self.log(f"{prefix}/{name}", results[name].float(), prog_bar=name == main)
        metrics.reset()

    def configure_callbacks(self) -> list[L.Callback]:
        from ltlight.callbacks import RNGState, StopOnNonFiniteLoss

        trainer = self._attached_trainer()
        attached = trainer.callbacks if trainer is not None else []
        # Already attached by an earlier fit of this trainer: returning them again would make
        # Lightning warn that they "override" themselves.
        callbacks = [c for c in self.method_callbacks if not any(c is a for a in attached)]
        present = [*self.method_callbacks, *attached]
        # a diverged run stops with a clear error; a resumed run draws the same random numbers
        for kind in (StopOnNonFiniteLoss, RNGState):
            if not any(isinstance(callback, kind) for callback in present):
                callbacks.append(kind())
        return callbacks

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self._parameter_groups())
        if self.classifier_lr_factor != 1.0:  # group 0 is the classifier's
            optimizer.param_groups[0]["lr"] *= self.classifier_lr_factor
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        set_max_epochs = getattr(scheduler, "set_max_epochs", None)
        trainer = self._attached_trainer()
        if set_max_epochs is not None and trainer is not None:
            # a schedule in fractions of the run (WarmupMultiStepLR) learns the run's length
            set_max_epochs(trainer.max_epochs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }

    def _parameter_groups(self) -> list[Tensor] | list[dict[str, list[Tensor]]]:
        """The trained parameters: frozen ones (decoupled stage 2) stay out of the optimiser and
        its weight decay; with a ``classifier_lr_factor``, the classifier's come first in a
        group of their own."""
        trained = [p for p in self.parameters() if p.requires_grad]
        if self.classifier_lr_factor == 1.0:
            return trained
        in_classifier = {id(p) for p in get_classifier(self.backbone).parameters()}
        classifier = [p for p in trained if id(p) in in_classifier]
        if not classifier:
            raise ValueError(
                f"classifier_lr_factor is {self.classifier_lr_factor}, but the classifier has no "
                "trained parameters"
            )
        return [
            {"params": classifier},
            {"params": [p for p in trained if id(p) not in in_classifier]},
        ]

    # -- checkpoints: the preprocessing, and the LWS scale when one was learnt ------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.preprocessing is not None:
            checkpoint["ltlight_preprocessing"] = self.preprocessing.to_dict()
        checkpoint["ltlight_multi_label"] = self.multi_label
        drop_frozen_tensors(self.finetune, self.backbone, checkpoint)

    def _restore_frozen(self, checkpoint: dict[str, Any]) -> None:
        restore_frozen_tensors(self.finetune, self.backbone, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restore_frozen(checkpoint)
        if "ltlight_preprocessing" in checkpoint:
            self.preprocessing = Preprocessing.from_dict(checkpoint["ltlight_preprocessing"])
        self.multi_label = bool(checkpoint.get("ltlight_multi_label", self.multi_label))
        scale = checkpoint.get("state_dict", {}).get("class_scale")
        if scale is not None and self.class_scale is None:
            self.class_scale = nn.Parameter(torch.ones_like(scale, device=self.device))
