"""Callbacks whose state is a function of the epoch: deferred re-weighting (DRW), deferred
re-sampling (DRS), TaiLr's γ schedule and decoupled classifier retraining (cRT, LWS, MiSLAS)."""
