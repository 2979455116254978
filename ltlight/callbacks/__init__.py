"""Callbacks: epoch switches (DRW, DRS, TaiLr's γ, decoupled classifier retraining), post-hoc
calibration (temperature, logit adjustment, τ-normalisation), run safety (the checkpoint an
interrupted run resumes from, a stop on a non-finite loss, the RNG states), the per-class report,
the prediction writer, the best epoch on a validation split, the text-initialised classifier."""

from ltlight.callbacks.best_checkpoint import BestCheckpoint
from ltlight.callbacks.epoch_switches.classifier_retraining import ClassifierRetraining
from ltlight.callbacks.epoch_switches.deferred_resampling import DeferredResampling
from ltlight.callbacks.epoch_switches.deferred_reweighting import DeferredReweighting
from ltlight.callbacks.epoch_switches.tailr_gamma import TaiLrGammaSchedule
from ltlight.callbacks.posthoc.logit_adjustment import PostHocLogitAdjustment
from ltlight.callbacks.posthoc.tau_normalization import TauNormalization
from ltlight.callbacks.posthoc.temperature_scaling import TemperatureScaling
from ltlight.callbacks.posthoc.threshold_tuning import ThresholdTuning
from ltlight.callbacks.prediction_writer import PredictionWriter
from ltlight.callbacks.report import PerClassReport
from ltlight.callbacks.run_safety.finite_loss import NonFiniteLossError, StopOnNonFiniteLoss
from ltlight.callbacks.run_safety.interrupt_checkpoint import InterruptCheckpoint
from ltlight.callbacks.run_safety.rng_state import RNGState
from ltlight.callbacks.text_classifier import TextInitialisedClassifier

__all__ = [
    "BestCheckpoint",
    "ClassifierRetraining",
    "DeferredResampling",
    "DeferredReweighting",
    "InterruptCheckpoint",
    "NonFiniteLossError",
    "PerClassReport",
    "PostHocLogitAdjustment",
    "PredictionWriter",
    "RNGState",
    "StopOnNonFiniteLoss",
    "TaiLrGammaSchedule",
    "TauNormalization",
    "TemperatureScaling",
    "TextInitialisedClassifier",
    "ThresholdTuning",
]
