"""Callbacks: the re-balancing schedules (DRW, DRS, TaiLr's γ) and the per-class report."""

from ltlight.callbacks.deferred_resampling import DeferredResampling
from ltlight.callbacks.deferred_reweighting import DeferredReweighting
from ltlight.callbacks.gamma_schedule import TaiLrGammaSchedule
from ltlight.callbacks.report import PerClassReport

__all__ = ["DeferredResampling", "DeferredReweighting", "PerClassReport", "TaiLrGammaSchedule"]
