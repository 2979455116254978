"""Temperature scaling (Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern Neural Networks",
ICML 2017): one scalar ``T > 0`` dividing the logits, fitted on the validation split."""

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ltlight.callbacks.posthoc.base import PostHocCallback, collect_outputs


def fit_temperature(logits: Tensor, target: Tensor, max_iter: int = 100) -> float:
    """``T`` minimising the NLL of ``softmax(logits / T)``: LBFGS on ``log T`` (so ``T > 0``),
    float64, starting from ``T = 1``.

    Args:
        logits: ``(N, C)`` predictive logits (with any logit adjustment already applied).
        target: ``(N,)`` class indices.
        max_iter: LBFGS iterations.
    """
    # validate/test run under inference mode: the fit needs autograd, on copies made outside it.
    with torch.inference_mode(False), torch.enable_grad():
        z, y = logits.detach().double().clone(), target.clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(z / log_t.exp(), y)
            loss.backward()
            return loss

        optimizer.step(closure)
    return float(log_t.detach().exp())


class TemperatureScaling(PostHocCallback):
    """Fit ``module.temperature`` on the validation split: ``p = softmax(z' / T)``.

    ``z'`` are the logits the module predicts with — the loss's predictive logits with any post-hoc
    logit adjustment (``z − τ·log π``) already applied, so list this callback *after*
    :class:`PostHocLogitAdjustment` and :class:`TauNormalization`. ``T`` minimises the
    validation NLL (LBFGS on ``log T``); the argmax, hence every error, is unchanged.

    Runs at the end of ``fit`` and at the start of ``validate``/``test``/``predict`` of a model
    whose ``temperature`` is still 1 (see :mod:`ltlight.callbacks.posthoc.base`).

    Args:
        save_path: where ``validate``/``test``/``predict`` write the calibrated checkpoint.

    Raises:
        ValueError: the datamodule validates on the test split (``val_per_class = 0``).

    Example:
        >>> from ltlight.callbacks import TemperatureScaling
        >>> callback = TemperatureScaling()  # Trainer(callbacks=[callback]) with val_per_class > 0
    """

    name = "posthoc/temperature_scaling"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        position = trainer.callbacks.index(self)
        later = [
            type(c).__name__
            for c in trainer.callbacks[position + 1 :]
            if isinstance(c, PostHocCallback) and not isinstance(c, TemperatureScaling)
        ]
        if later:
            raise ValueError(
                f"TemperatureScaling is listed before {', '.join(later)}: T is fitted on the "
                "logits the model finally predicts with, so list TemperatureScaling last"
            )

    def is_fitted(self, pl_module: L.LightningModule) -> bool:
        return pl_module.temperature != 1.0

    def fit(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any) -> str:
        logits, target, _ = collect_outputs(trainer, pl_module, loader)
        adjusted = pl_module.adjusted_logits(logits.to(pl_module.device)).cpu()
        pl_module.temperature = fit_temperature(adjusted, target)
        return f"T = {pl_module.temperature:.4f}"
