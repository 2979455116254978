"""A real Lightning Trainer on the CPU without logger, checkpoints, progress bar or summary: the
one the tests that fit a few steps share."""

import lightning as L


def quiet_trainer(**overrides) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(options | overrides))
