"""Stage 2 of decoupled training: retrain (cRT) or rescale (LWS) the classifier on frozen features
with class-balanced sampling (Kang, Xie, Rohrbach, Yan, Gordo, Feng, Kalantidis, "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020); with ``shifted_bn`` and
:class:`~ltlight.losses.LabelAwareSmoothingLoss`, MiSLAS's stage 2 (Zhong, Cui, Liu, Jia,
"Improving Calibration for Long-Tailed Recognition", CVPR 2021).
"""

import lightning as L
import torch
from torch import nn

from ltlight.callbacks.epoch_switches.base import EpochSwitch, class_balanced_sampler
from ltlight.checks import check_choice, check_range
from ltlight.models.heads import get_classifier

MODES = ("crt", "lws")


def _num_outputs(classifier: nn.Module) -> int:
    for attribute in ("out_features", "num_classes"):
        if hasattr(classifier, attribute):
            return int(getattr(classifier, attribute))
    raise TypeError(f"cannot tell the number of classes of {type(classifier).__name__}")


class ClassifierRetraining(EpochSwitch):
    """Freeze a stage-1 model's features and train only its classifier, class-balanced.

    Needs ``LongTailModule(init_weights=<stage-1 checkpoint>)`` (the stage-1 weights; resuming a
    stage-2 run from its own checkpoint works too). Then:

    * the backbone's parameters are frozen — the features, and the classifier too for ``"lws"``
      — and left out of the optimiser; its BatchNorm layers stay in eval mode, so their running
      statistics keep the stage-1 values, unless ``shifted_bn`` (MiSLAS: the statistics are
      re-estimated on the class-balanced stage-2 batches; their affine weights stay frozen);
    * ``"crt"`` (classifier re-training): the classifier is re-initialised
      (``reset_parameters()``) unless ``reinitialize=False`` (MiSLAS fine-tunes it), and trained;
    * ``"lws"`` (learnable weight scaling): the classifier is kept and one scale per class is
      learnt, ``z_j ← f_j · z_j`` with ``f = 1`` at the start (``module.class_scale``, saved in
      the checkpoint). ``learn_scale=True`` adds the scale to ``"crt"`` too (MiSLAS);
    * every epoch is drawn class-balanced (each class equally likely), through the training
      loader's ``class_balanced`` flag as in deferred re-sampling.

    The classifier is found with :func:`~ltlight.models.get_classifier` (``get_classifier()``,
    timm's convention, or a torchvision ``fc``).

    Args:
        mode: ``"crt"`` or ``"lws"``.
        reinitialize: re-initialise the classifier (``"crt"`` only); default ``True``.
        learn_scale: learn the per-class scale ``f``; default ``True`` for ``"lws"``, ``False``
            for ``"crt"``.
        shifted_bn: update BatchNorm running statistics on the stage-2 data (MiSLAS).
        classifier_lr_factor: the classifier's learning rate relative to the optimiser's (the
            learnt scale keeps the optimiser's), > 0; MiSLAS's official ``lr_factor``: CIFAR-10
            0.5, CIFAR-100 0.2, ImageNet-LT, iNaturalist 2018 and Places-LT 0.05. ``"crt"`` only.

    Raises:
        ValueError: an unknown ``mode``, ``reinitialize`` or ``classifier_lr_factor`` with
            ``"lws"``, a ``classifier_lr_factor`` ≤ 0, or a stage-2 run without
            ``init_weights`` (nor a checkpoint to resume).

    Example:
        >>> from ltlight.callbacks import ClassifierRetraining
        >>> callback = ClassifierRetraining(mode="crt")  # in LongTailModule(callbacks=[...])
    """

    def __init__(
        self,
        mode: str = "crt",
        reinitialize: bool | None = None,
        learn_scale: bool | None = None,
        shifted_bn: bool = False,
        classifier_lr_factor: float = 1.0,
    ) -> None:
        check_choice("mode", mode, MODES)
        if mode == "lws" and reinitialize:
            raise ValueError("reinitialize=True contradicts mode='lws', which keeps the classifier")
        self.classifier_lr_factor = check_range(
            "classifier_lr_factor", classifier_lr_factor, 0.0, low_open=True
        )
        if mode == "lws" and self.classifier_lr_factor != 1.0:
            raise ValueError(
                f"classifier_lr_factor={classifier_lr_factor} contradicts mode='lws', which "
                "freezes the classifier"
            )
        self.mode = mode
        self.reinitialize = mode == "crt" if reinitialize is None else bool(reinitialize)
        self.learn_scale = mode == "lws" if learn_scale is None else bool(learn_scale)
        self.shifted_bn = shifted_bn

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Before the module's setup (which loads init_weights) and before the optimiser exists.
        backbone = getattr(pl_module, "backbone", None)
        if backbone is None:
            raise TypeError("ClassifierRetraining needs an ltlight.LongTailModule (`backbone`)")
        classifier = get_classifier(backbone)
        if stage != "fit":
            return
        if getattr(pl_module, "init_weights", None) is None and trainer.ckpt_path is None:
            raise ValueError(
                "ClassifierRetraining is stage 2 of decoupled training and needs the stage-1 "
                "weights: set model.init_args.init_weights to the stage-1 checkpoint (.ckpt), "
                "e.g. --model.init_args.init_weights=runs/<stage-1 run>/checkpoints/last.ckpt"
            )
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
        for parameter in classifier.parameters():
            parameter.requires_grad_(self.mode == "crt")
        pl_module.classifier_lr_factor = self.classifier_lr_factor
        if self.learn_scale and pl_module.class_scale is None:
            weight = next(classifier.parameters())
            ones = torch.ones(_num_outputs(classifier), device=weight.device, dtype=weight.dtype)
            pl_module.class_scale = nn.Parameter(ones)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After init_weights are loaded; a resumed stage-2 run keeps its trained classifier.
        if self.reinitialize and trainer.ckpt_path is None:
            classifier = get_classifier(pl_module.backbone)
            if not hasattr(classifier, "reset_parameters"):
                raise TypeError(
                    f"cannot re-initialise {type(classifier).__name__}: it has no "
                    "reset_parameters(); pass reinitialize=False"
                )
            classifier.reset_parameters()

    def apply(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        sampler = class_balanced_sampler(trainer, "ClassifierRetraining")
        sampler.class_balanced = True
        classifier = get_classifier(pl_module.backbone)
        in_classifier = set(classifier.modules())
        for module in pl_module.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in in_classifier:
                module.train(self.shifted_bn)
