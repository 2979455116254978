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


def ddp_trainer(out_dir, **overrides) -> L.Trainer:
    """:func:`quiet_trainer` as two CPU processes (gloo DDP) writing into ``out_dir``, without
    the sanity check: the DDP workers' trainer (``tests/ddp_*_worker.py``)."""
    options = dict(devices=2, strategy="ddp", num_sanity_val_steps=0, default_root_dir=out_dir)
    return quiet_trainer(**(options | overrides))
