"""Callbacks: the re-balancing schedules (DRW, DRS, TaiLr's γ), the per-class report, and the
checkpoint an interrupted run resumes from."""

from ltlight.callbacks.deferred_resampling import DeferredResampling
from ltlight.callbacks.deferred_reweighting import DeferredReweighting
from ltlight.callbacks.finite_loss import StopOnNonFiniteLoss
from ltlight.callbacks.gamma_schedule import TaiLrGammaSchedule
from ltlight.callbacks.interrupt_checkpoint import InterruptCheckpoint
from ltlight.callbacks.report import PerClassReport

__all__ = [
    "DeferredResampling",
    "DeferredReweighting",
    "InterruptCheckpoint",
    "PerClassReport",
    "StopOnNonFiniteLoss",
    "TaiLrGammaSchedule",
]
