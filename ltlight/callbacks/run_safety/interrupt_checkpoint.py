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

Lightning 2.6 also resumes every ``fit`` without ``ckpt_path`` from ``"last"`` as soon as an
``OnExceptionCheckpoint`` is configured (warning about it on every fresh run). So this callback is a
plain :class:`~lightning.pytorch.callbacks.Checkpoint`: a new run never continues an old one by
itself; ``ltlight fit ... --ckpt_path last`` finds this run's file (:mod:`ltlight.cli.runs`). It:

* turns the first Ctrl-C during training into SIGTERM's path — the batch finishes, then the run
  stops with a checkpoint on a batch boundary; a second Ctrl-C interrupts at once;
* under DDP, replaces Lightning 2.6's SIGTERM handler during training: that handler calls a
  collective (``broadcast``) from inside the signal handler, which meets whatever collective the
  other processes are in (a gradient all-reduce, a buffer broadcast) — a "collective mismatch"
  crash with gloo, a hang with NCCL. Here the handler only notes the request; every
  ``sync_every_n_batches`` training batches the ranks sum their notes (one tiny all-reduce, the
  only host sync it adds), and if any rank was signalled all of them stop after that same batch
  and save;
* saves only when training stops on SIGTERM or Ctrl-C, once training has started (after set-up and
  any restore): a failed start leaves an existing checkpoint alone, and an error (a NaN loss, a
  bug) does not leave a checkpoint of broken weights to resume from;
* when its folder cannot be written (read-only, full), says so and saves to the temporary folder
  instead, or says that nothing was saved; a save writes a temporary name and renames it, so it
  never leaves a partial ``interrupted.ckpt``;
* removes its file only after a ``fit`` that resumed from it has finished.
"""

import os
import signal
import tempfile
import threading
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ltlight._lightning_internals import request_stop, stop_as_on_sigterm
from ltlight.checks import check_integer


class InterruptCheckpoint(Checkpoint):
    """Save ``<dirpath>/<filename>.ckpt`` when SIGTERM or Ctrl-C stops training.

    Args:
        dirpath: folder of the checkpoint (created when saving); ``None``: the trainer's
            ``default_root_dir`` — the run's folder under ``ltlight``.
        filename: its name without ``.ckpt``.
        sync_every_n_batches: under DDP, how often (in training batches, ≥ 1) the ranks agree on
            whether a signal arrived: a stop comes at most this many batches after the signal,
            and no other batch pays for a host sync.

    After an interruption, :attr:`saved_to` is the file written (``None`` if nothing could be)
    and :attr:`save_error` says why the chosen folder could not be written, if it could not.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "interrupted",
        sync_every_n_batches: int = 10,
    ) -> None:
        super().__init__()
        if not filename:
            raise ValueError("filename must be a non-empty file name, got ''")
        self.sync_every_n_batches = check_integer("sync_every_n_batches", sync_every_n_batches, 1)
        self.dirpath = dirpath
        self.filename = filename
        self.saved_to: str | None = None
        self.save_error: str | None = None
        self._training = False
        self._previous_sigint: Any = None
        self._sigint_installed = False
        self._sigint_pressed = False
        self._previous_sigterm: Any = None
        self._sigterm_installed = False
        self._stop_requested = False
        self._batches_since_sync = 0

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.dirpath or ".", self.filename + self.FILE_EXTENSION)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = str(trainer.default_root_dir)

    # -- Ctrl-C during training: stop at the end of the batch ---------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = True
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.getsignal(signal.SIGINT)
            self._sigint_pressed = False
            signal.signal(signal.SIGINT, self._on_sigint)
            self._sigint_installed = True
            if trainer.world_size > 1:
                self._previous_sigterm = signal.getsignal(signal.SIGTERM)
                self._stop_requested = False
                self._batches_since_sync = 0
                signal.signal(signal.SIGTERM, self._on_sigterm_under_ddp)
                self._sigterm_installed = True

    def _on_sigterm_under_ddp(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True  # no collective here: see on_train_batch_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if not self._sigterm_installed:
            return
        # Every rank trains as many batches per epoch, so all meet in the same reduce.
        self._batches_since_sync += 1
        last_of_epoch = idx + 1 >= trainer.num_training_batches
        if self._batches_since_sync < self.sync_every_n_batches and not last_of_epoch:
            return
        self._batches_since_sync = 0
        requested = torch.tensor(float(self._stop_requested), device=pl_module.device)
        if float(trainer.strategy.reduce(requested, reduce_op="sum")) > 0:
            request_stop(trainer)  # every rank, this batch: all stop on the same boundary

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        # Lightning's SIGTERM handler sets the flag its loops check and, under DDP, passes the
        # stop to the other processes (see ltlight._lightning_internals).
        if self._sigint_pressed or not stop_as_on_sigterm(frame):
            self._restore_sigint()
            raise KeyboardInterrupt
        self._sigint_pressed = True
        rank_zero_info(
            "\nCtrl-C: finishing this batch, then saving a checkpoint to "
            f"{self.ckpt_path} (press Ctrl-C again to stop at once)"
        )

    def _restore_sigint(self) -> None:
        if self._sigint_installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._sigint_installed = False
        if self._sigterm_installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._sigterm_installed = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._training = False
        self._restore_sigint()

    # -- saving and removing -------------------------------------------------------------------
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint()
        interrupted = isinstance(exception, (SIGTERMException, KeyboardInterrupt))
        if self._training and interrupted:
            self._save(trainer)
        self._training = False

    def _save(self, trainer: L.Trainer) -> None:
        self.saved_to = self.save_error = None
        try:
            _save_whole(trainer, self.ckpt_path)
        except OSError as error:
            self.save_error = f"could not write {self.ckpt_path} ({type(error).__name__}: {error})"
        else:
            self.saved_to = self.ckpt_path
            rank_zero_info(f"Saved a checkpoint of the interrupted run to {self.ckpt_path}")
            return
        fallback = os.path.join(
            tempfile.gettempdir(), f"ltlight-{os.getpid()}-{self.filename}{self.FILE_EXTENSION}"
        )
        try:
            _save_whole(trainer, fallback)
        except OSError as error:
            self.save_error += f", nor {fallback} ({type(error).__name__}: {error})"
        else:
            self.saved_to = fallback

    def describe(self) -> str:
        """Where the interrupted run was saved — or could not be — in one sentence."""
        if self.saved_to is None and self.save_error is None:
            return "no checkpoint was saved (training had not started)"
        problem = f"{self.save_error}; " if self.save_error else ""
        if self.saved_to is None:
            return f"{problem}nothing was saved"
        where = "saved it instead to" if self.save_error else "saved the run to"
        return f"{problem}{where} {self.saved_to}"

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_sigint()
        resumed_from = trainer.ckpt_path
        if (
            stage == "fit"
            and resumed_from is not None
            and os.path.abspath(str(resumed_from)) == os.path.abspath(self.ckpt_path)
        ):
            trainer.strategy.remove_checkpoint(self.ckpt_path)


def _save_whole(trainer: L.Trainer, path: str) -> None:
    """``trainer.save_checkpoint(path)`` through a temporary name beside ``path``, renamed once
    written: a full disk leaves no partial file that ``--ckpt_path last`` would take (rank 0
    writes; the others take part in the save, which may be a collective)."""
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".{name}.partial-{os.getpid()}")
    try:
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, path)
    except BaseException:
        if trainer.is_global_zero and os.path.exists(partial):
            os.remove(partial)
        raise
