"""InterruptCheckpoint: a run stopped by SIGTERM or Ctrl-C leaves a checkpoint that resumes exactly.

What Lightning 2.6 does by itself. SIGTERM sets a flag that the loops check after each training
batch and epoch; they then raise ``SIGTERMException``, every callback's ``on_exception`` runs
(``OnExceptionCheckpoint`` saves) and the process ends. Ctrl-C raises ``KeyboardInterrupt`` wherever
the process is — in the forward pass, half-way through an optimiser step, after a stateful loss
(GHM-C's EMA) has counted the batch — so a checkpoint saved then cannot reproduce the uninterrupted
run. ``OnExceptionCheckpoint`` also saves when the exception comes from a typo caught at set-up,
overwriting an interrupted run's checkpoint with an untrained model that the next ``fit`` resumes
from, and removes its file at the end of every successful run, a ``validate`` of another method
included.

This subclass (still an ``OnExceptionCheckpoint``, so ``--ckpt_path last`` finds its file):

* turns the first Ctrl-C during training into SIGTERM's path — the batch finishes, then the run
  stops with a checkpoint on a batch boundary; a second Ctrl-C interrupts at once;
* saves only once training has started (after set-up and any restore), so a failed start leaves
  an existing checkpoint alone;
* removes its file only after a ``fit`` that resumed from it has finished.
"""

import os
import signal
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Save ``<dirpath>/<filename>.ckpt`` when training stops on SIGTERM, Ctrl-C or an error.

    Args:
        dirpath: folder of the checkpoint (created when saving).
        filename: its name without ``.ckpt``.
    """

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        super().__init__(dirpath, filename)
        self._training = False
        self._previous_sigint: Any = None
        self._sigint_installed = False
        self._sigint_pressed = False

    # -- Ctrl-C during training: stop at the end of the batch ---------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.getsignal(signal.SIGINT)
            self._sigint_pressed = False
            signal.signal(signal.SIGINT, self._on_sigint)
            self._sigint_installed = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        on_sigterm = signal.getsignal(signal.SIGTERM)
        if self._sigint_pressed or not callable(on_sigterm):
            self._restore_sigint()
            raise KeyboardInterrupt
        self._sigint_pressed = True
        rank_zero_info(
            "\nCtrl-C: finishing this batch, then saving a checkpoint to "
            f"{self.ckpt_path} (press Ctrl-C again to stop at once)"
        )
        # Lightning's SIGTERM handler sets the flag its loops check and, under DDP, passes the
        # stop to the other processes. Called with SIGTERM's number so that the DDP launcher
        # forwards SIGTERM, not a second Ctrl-C, to its child processes.
        on_sigterm(signal.SIGTERM, frame)

    def _restore_sigint(self) -> None:
        if self._sigint_installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._sigint_installed = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = False
        self._restore_sigint()

    # -- saving and removing -------------------------------------------------------------------
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        if self._training:
            rank_zero_info(f"Saving a checkpoint of the interrupted run to {self.ckpt_path}")
            super().on_exception(trainer, pl_module, exception)
        self._training = False

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_sigint()
        resumed_from = trainer.ckpt_path
        if (
            stage == "fit"
            and resumed_from is not None
            and os.path.abspath(str(resumed_from)) == os.path.abspath(self.ckpt_path)
        ):
            trainer.strategy.remove_checkpoint(self.ckpt_path)
