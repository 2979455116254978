"""Callbacks: the re-balancing schedules (DRW, DRS, TaiLr's γ), post-hoc calibration (temperature,
logit adjustment, τ-normalisation), decoupled classifier retraining, the per-class report, the
checkpoint an interrupted run resumes from, and the best epoch on a validation split."""

from ltlight.callbacks.best_checkpoint import BestCheckpoint
from ltlight.callbacks.classifier_retraining import ClassifierRetraining
from ltlight.callbacks.deferred_resampling import DeferredResampling
from ltlight.callbacks.deferred_reweighting import DeferredReweighting
from ltlight.callbacks.finite_loss import StopOnNonFiniteLoss
from ltlight.callbacks.gamma_schedule import TaiLrGammaSchedule
from ltlight.callbacks.interrupt_checkpoint import InterruptCheckpoint
from ltlight.callbacks.logit_adjustment import PostHocLogitAdjustment
from ltlight.callbacks.prediction_writer import PredictionWriter
from ltlight.callbacks.report import PerClassReport
from ltlight.callbacks.tau_normalization import TauNormalization
from ltlight.callbacks.temperature_scaling import TemperatureScaling

__all__ = [
    "BestCheckpoint",
    "ClassifierRetraining",
    "DeferredResampling",
    "DeferredReweighting",
    "InterruptCheckpoint",
    "PerClassReport",
    "PostHocLogitAdjustment",
    "PredictionWriter",
    "StopOnNonFiniteLoss",
    "TaiLrGammaSchedule",
    "TauNormalization",
    "TemperatureScaling",
]
