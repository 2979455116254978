"""Two-process DDP training stopped by SIGTERM on rank 0; see test_ddp.py.

``python tests/ddp_sigterm_worker.py OUT_DIR``: LDAM on Digits-LT with an InterruptCheckpoint in
``OUT_DIR``; rank 0 sends itself SIGTERM at the start of global step ``SIGNAL_STEP`` (as a cluster
scheduler would signal the launcher). Each rank that stops writes ``OUT_DIR/stopped<r>.json``
with the global step it stopped at; the script exits with 128 + SIGTERM, as ``ltlight`` does.
"""

import json
import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from trainers import ddp_trainer

from ltlight import LongTailModule
from ltlight.callbacks import InterruptCheckpoint
from ltlight.data import DigitsLTDataModule
from ltlight.losses import LDAMLoss
from ltlight.models import DigitsNet

SIGNAL_STEP = 5
#: The ranks agree on a stop every SYNC_EVERY batches (8 batches per epoch here).
SYNC_EVERY = 4


class SignalAt(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == 0 and trainer.global_step == SIGNAL_STEP:
            os.kill(os.getpid(), signal.SIGTERM)


def main(out_dir: Path) -> None:
    L.seed_everything(0)
    module = LongTailModule(
        DigitsNet(normed=True),
        loss=LDAMLoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    )
    trainer = ddp_trainer(
        out_dir,
        max_epochs=3,
        callbacks=[
            SignalAt(),
            InterruptCheckpoint(str(out_dir), "interrupted", sync_every_n_batches=SYNC_EVERY),
        ],
        limit_val_batches=0,
        enable_checkpointing=True,
    )
    try:
        trainer.fit(module, datamodule=DigitsLTDataModule(batch_size=32, seed=5))
    except SIGTERMException:
        step = {"global_step": trainer.global_step}
        (out_dir / f"stopped{trainer.global_rank}.json").write_text(json.dumps(step))
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
