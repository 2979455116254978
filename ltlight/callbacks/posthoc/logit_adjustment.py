"""Post-hoc logit adjustment (Menon, Jayasumana, Rawat, Jain, Veit, Kumar, "Long-Tail Learning via
Logit Adjustment", ICLR 2021, eq. 9): predict with ``z − τ·log π``, ``π`` the training prior."""

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ltlight.callbacks.posthoc.base import PostHocCallback, collect_outputs, tau_grid
from ltlight.checks import check_range
from ltlight.metrics import balanced_error

#: The τ searched on the validation split when none is given: 0, 0.05, ..., 2.
TAU_GRID = tau_grid(2.0)


def choose_tau(
    logits: Tensor, target: Tensor, log_prior: Tensor, grid: Sequence[float] = TAU_GRID
) -> float:
    """The ``τ`` of ``grid`` with the lowest balanced error of ``argmax(z − τ·log π)``; among ties
    the one nearest 1 (Bayes-optimal for the balanced error when the model is calibrated)."""
    num_classes = logits.shape[1]
    errors = [
        balanced_error((logits - tau * log_prior).argmax(1), target, num_classes) for tau in grid
    ]
    best = min(errors)
    return min(
        (t for t, e in zip(grid, errors, strict=True) if e == best), key=lambda t: abs(t - 1)
    )


class PostHocLogitAdjustment(PostHocCallback):
    """Set ``module.logit_adjustment_tau``: the module then predicts ``z − τ·log π (+ log q)``.

    ``π`` is the training class prior (the module's ``class_counts``). ``τ = 1`` is the
    Bayes-optimal adjustment for the balanced error if the model is calibrated; ``tau=None``
    picks ``τ`` in [0, 2] (step 0.05) on the validation split's balanced error. For a known test
    prior ``q`` (``target_prior``), the prediction is ``z − τ·log π + log q`` (the paper's
    adjustment to a shifted test prior, ``τ = 1``).

    Args:
        tau: ``τ`` ≥ 0, or ``None`` to choose it on validation.
        target_prior: the test split's class prior ``q`` (C positive numbers, normalised here),
            or ``None`` for a balanced test split.
        save_path: where ``validate``/``test``/``predict`` write the calibrated checkpoint.

    Raises:
        ValueError: ``tau < 0``; ltlight's datamodule validating on the test split
            (``val_per_class = 0``: the metrics before and after, and ``tau=None``, need it).

    Example:
        >>> from ltlight.callbacks import PostHocLogitAdjustment
        >>> callback = PostHocLogitAdjustment(tau=1.0)  # or tau=None: chosen on validation
    """

    name = "posthoc/logit_adjustment"

    def __init__(
        self,
        tau: float | None = None,
        target_prior: list[float] | None = None,
        save_path: str | None = None,
    ) -> None:
        super().__init__(save_path=save_path)
        self.tau = None if tau is None else check_range("tau", tau, 0.0)
        if target_prior is not None:
            prior = torch.as_tensor(target_prior, dtype=torch.float64)
            if prior.dim() != 1 or not bool(torch.all(prior > 0)):
                raise ValueError(f"target_prior must be positive numbers, got {target_prior!r}")
        self.target_prior = target_prior

    def is_fitted(self, pl_module: L.LightningModule) -> bool:
        return pl_module.calibration.offset.numel() > 0

    def fit(self, trainer: L.Trainer, pl_module: L.LightningModule, loader: Any) -> str:
        tau = self.tau
        if tau is None:
            logits, target, _ = collect_outputs(trainer, pl_module, loader)
            predictive = pl_module.predictive_logits(logits.to(pl_module.device)).cpu()
            counts = torch.as_tensor(pl_module.class_counts, dtype=torch.float64)
            tau = choose_tau(predictive.double(), target, torch.log(counts / counts.sum()))
        pl_module.set_logit_adjustment(tau, self.target_prior)
        chosen = "given" if self.tau is not None else "chosen on validation"
        prior = "" if self.target_prior is None else ", with the target prior's log q"
        return f"τ = {tau:g} ({chosen}){prior}"
