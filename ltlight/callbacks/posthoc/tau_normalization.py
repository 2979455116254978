"""τ-normalisation (Kang, Xie, Rohrbach, Yan, Gordo, Feng, Kalantidis, "Decoupling
Representation and Classifier for Long-Tailed Recognition", ICLR 2020): rescale each class's
classifier row by ``1 / ‖W_j‖^τ``, which evens out the head classes' larger norms."""

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from ltlight.callbacks.posthoc.base import (
    PostHocCallback,
    collect_outputs,
    tau_grid,
    validation_loader,
)
from ltlight.checks import check_range
from ltlight.metrics import balanced_error
from ltlight.models.heads import NormedLinear, get_classifier

#: The τ searched on the validation split when none is given: 0, 0.05, ..., 1.
TAU_GRID = tau_grid(1.0)


def tau_normalized(weight: Tensor, tau: float) -> Tensor:
    """``W_j / ‖W_j‖^τ`` for every row ``W_j`` (one per class) of ``weight`` ``(C, D)``."""
    return weight / weight.norm(dim=1, keepdim=True).pow(tau)


class TauNormalization(PostHocCallback):
    """Replace the classifier's weights by ``W_j / ‖W_j‖^τ`` and drop its bias.

    ``τ = 0`` keeps the weights (only the bias goes), ``τ = 1`` gives every class a unit-norm
    row. ``tau=None`` picks ``τ`` in [0, 1] (step 0.05) on the validation split's balanced error
    (the paper's protocol); ties go to the smallest ``τ``. The classifier is found with
    :func:`~ltlight.models.get_classifier` (``get_classifier()`` or a torchvision ``fc``) and must
    be an ``nn.Linear``; a cosine head (:class:`~ltlight.models.NormedLinear`) is normalised
    already. The new weights live in the checkpoint; ``module.calibration.classifier_tau`` records
    ``τ`` (−1 until applied), so it is never applied twice.

    Args:
        tau: ``τ`` in [0, 1], or ``None`` to choose it on validation.
        save_path: where ``validate``/``test``/``predict`` write the calibrated checkpoint.

    Raises:
        ValueError: ``tau`` outside [0, 1]; the datamodule validates on the test split.
        TypeError: the classifier is not an ``nn.Linear``.

    Example:
        >>> from ltlight.callbacks import TauNormalization
        >>> callback = TauNormalization()  # τ chosen on the validation split
    """

    name = "posthoc/tau_normalization"

    def __init__(self, tau: float | None = None, save_path: str | None = None) -> None:
        super().__init__(save_path=save_path)
        self.tau = None if tau is None else check_range("tau", tau, 0.0, 1.0)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._classifier(pl_module)

    @staticmethod
    def _classifier(pl_module: L.LightningModule) -> nn.Linear:
        classifier = get_classifier(pl_module.backbone)
        if isinstance(classifier, NormedLinear) or not isinstance(classifier, nn.Linear):
            raise TypeError(
                f"TauNormalization rescales an nn.Linear classifier's rows, got "
                f"{type(classifier).__name__}"
                + (
                    " (a cosine head: its rows are normalised already)"
                    if isinstance(classifier, NormedLinear)
                    else ""
                )
            )
        return classifier

    def is_fitted(self, pl_module: L.LightningModule) -> bool:
        return float(pl_module.calibration.classifier_tau) >= 0

    def fit(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any) -> str:
        classifier = self._classifier(pl_module)
        weight = classifier.weight.detach().double().cpu()
        tau = self.tau
        if tau is None:
            loader = validation_loader(trainer, type(self).__name__)
            _, target, features = collect_outputs(trainer, pl_module, loader, classifier)
            scale = pl_module.class_scale
            errors = []
            for candidate in TAU_GRID:
                logits = features @ tau_normalized(weight, candidate).T
                if scale is not None:
                    logits = logits * scale.detach().double().cpu()
                adjusted = pl_module.adjusted_logits(logits.to(pl_module.device)).cpu()
                errors.append(balanced_error(adjusted.argmax(1), target, weight.shape[0]))
            tau = TAU_GRID[errors.index(min(errors))]
        with torch.no_grad():
            classifier.weight.copy_(tau_normalized(weight, tau).to(classifier.weight))
            if classifier.bias is not None:
                classifier.bias.zero_()
        pl_module.calibration.classifier_tau.fill_(tau)
        chosen = "given" if self.tau is not None else "chosen on validation"
        return f"τ = {tau:g} ({chosen})"
