"""One command for decoupled training: stage 1, then stage 2 from stage 1's checkpoint.

``python -m ltlight.cli.two_stage configs/digits_lt/ce_stage1.yaml configs/digits_lt/crt.yaml``
runs ``ltlight fit --config <stage 1>``, then ``ltlight fit --config <stage 2>
--model.init_args.init_weights=<stage-1 checkpoint>``. The stage-1 checkpoint is its
``ModelCheckpoint``'s best one on the validation split when it monitors one, else the last epoch
(written to ``<log dir>/stage1.ckpt`` when no checkpoint callback wrote one). Each stage has its
own run folder (``runs/<dataset>/<config name>/<run name>``). Arguments after ``--`` go to both
stages
(``-- --trainer.max_epochs=2 --data.init_args.seed=1``).
"""

import argparse
import os
import sys
from pathlib import Path

from ltlight.cli.command import LongTailCLI, configure_wandb_mode


def stage1_checkpoint(trainer) -> str:
    """The checkpoint stage 2 starts from: best on validation, else last, else written now."""
    callbacks = sorted(  # a callback that monitors the validation split first
        trainer.checkpoint_callbacks, key=lambda c: getattr(c, "monitor", None) is None
    )
    for callback in callbacks:
        for path in (getattr(callback, "best_model_path", ""), callback.last_model_path):
            if path and os.path.isfile(path):
                return path
    folder = Path(trainer.log_dir or trainer.default_root_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = str(folder / "stage1.ckpt")
    trainer.save_checkpoint(path)
    return path


def run(
    stage1: str, stage2: str, extra: list[str] | None = None
) -> tuple[LongTailCLI, LongTailCLI]:
    """Fit ``stage1``, then ``stage2`` from its checkpoint; return both CLIs."""
    extra = list(extra or [])
    first = LongTailCLI(args=["fit", "--config", stage1, *extra])
    path = stage1_checkpoint(first.trainer)
    print(f"ltlight.cli.two_stage: stage 1 done; stage 2 starts from {path}", file=sys.stderr)
    second = LongTailCLI(
        args=["fit", "--config", stage2, f"--model.init_args.init_weights={path}", *extra]
    )
    return first, second


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m ltlight.cli.two_stage", description=__doc__)
    parser.add_argument("stage1", help="the stage-1 config (e.g. ce_stage1.yaml)")
    parser.add_argument("stage2", help="the stage-2 config (crt.yaml, lws.yaml, ...)")
    args = parser.parse_args(argv)
    configure_wandb_mode()
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from run(), not from here
    run(args.stage1, args.stage2, extra)


if __name__ == "__main__":
    main()
