"""Post-hoc calibration fitted on the validation split: temperature scaling, logit adjustment and
τ-normalisation, on one base (:mod:`ltlight.callbacks.posthoc.base`)."""
