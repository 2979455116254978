"""One command for decoupled training: stage 1, then stage 2 from stage 1's checkpoint.

``ltlight two_stage configs/digits_lt/ce_stage1.yaml configs/digits_lt/crt.yaml`` runs
``ltlight fit --config <stage 1>``, then ``ltlight fit --config <stage 2>
--model.init_args.init_weights=<stage-1 checkpoint>``. The stage-1 checkpoint is its
``ModelCheckpoint``'s best one on the validation split when it monitors one, else the last epoch
(written to ``<log dir>/stage1.ckpt`` when no checkpoint callback wrote one). Each stage has its
own run folder (``runs/<dataset>/<config name>/<run name>``) and its own W&B run, the two in one
W&B group (``<stage 1>+<stage 2>/<start time>``, job types ``stage1`` and ``stage2``).
Arguments after ``--`` go to both stages (``-- --trainer.max_epochs=2 --data.init_args.seed=1``).

Under DDP (``-- --trainer.devices=2 --trainer.strategy=ddp``, or ``torchrun ... -m ltlight.cli
two_stage ...``) every process runs both stages: Lightning's launcher starts the other ranks with
this process's command line, which is left whole. Every rank uses rank 0's run folder and rank
0's stage-1 checkpoint.
"""

import argparse
import sys
import time
from pathlib import Path

import lightning as L

from ltlight.cli.command import LongTailCLI, finish_wandb_run

PROGRAM = "ltlight two_stage"


def stage1_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint stage 2 starts from, rank 0's on every rank: best on validation, else
    last, else written now (by every rank together: saving is a collective)."""
    saved = _saved_checkpoint(trainer) if trainer.is_global_zero else None
    saved = trainer.strategy.broadcast(saved, src=0)
    if saved is not None:
        return saved
    folder = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir: rank 0's
    if trainer.is_global_zero:
        folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "stage1.ckpt")
    trainer.save_checkpoint(path, weights_only=False)
    return path


def _saved_checkpoint(trainer: L.Trainer) -> str | None:
    callbacks = sorted(  # a callback that monitors the validation split first
        trainer.checkpoint_callbacks, key=lambda c: getattr(c, "monitor", None) is None
    )
    for callback in callbacks:
        for path in (getattr(callback, "best_model_path", ""), callback.last_model_path):
            if path and Path(path).is_file():
                return path
    return None


def run(
    stage1: str, stage2: str, extra: list[str] | None = None
) -> tuple[LongTailCLI, LongTailCLI]:
    """Fit ``stage1``, then ``stage2`` from its checkpoint; return both CLIs."""
    extra = list(extra or [])
    group = f"{Path(stage1).stem}+{Path(stage2).stem}/{time.strftime('%Y%m%d-%H%M%S')}"
    first = LongTailCLI(
        args=["fit", "--config", stage1, *extra],
        wandb_defaults={"group": group, "job_type": "stage1"},
    )
    path = stage1_checkpoint(first.trainer)
    finish_wandb_run()  # or W&B logs stage 2 into stage 1's run
    if first.trainer.is_global_zero:
        print(f"{PROGRAM}: stage 1 done; stage 2 starts from {path}", file=sys.stderr)
    second = LongTailCLI(
        args=["fit", "--config", stage2, f"--model.init_args.init_weights={path}", *extra],
        wandb_defaults={"group": group, "job_type": "stage2"},
    )
    finish_wandb_run()
    return first, second


def main(argv: list[str]) -> None:
    """``ltlight two_stage <stage 1> <stage 2> [-- <arguments of both stages>]``."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("stage1", help="the stage-1 config (e.g. ce_stage1.yaml)")
    parser.add_argument("stage2", help="the stage-2 config (crt.yaml, lws.yaml, ...)")
    args = parser.parse_args(argv)
    run(args.stage1, args.stage2, extra)
