"""Post-hoc calibration fitted on the validation split: temperature scaling, logit adjustment,
τ-normalisation and multi-label thresholds, on one base (:mod:`ltlight.callbacks.posthoc.base`)."""
