"""The ``ltlight`` command: Lightning's CLI over :class:`~ltlight.LongTailModule` and any datamodule.

``ltlight fit --config configs/digits_lt/ldam_drw.yaml`` — every part (backbone, loss, callbacks,
datamodule, logger) is named by ``class_path``, so a user's own classes work from YAML too.
"""

import netrc
import os
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI

from ltlight.module import LongTailModule

#: Errors our constructors and set-up raise on bad input; shown as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


class LongTailCLI(LightningCLI):
    """LightningCLI with ltlight's defaults: the model and the data in subclass mode, seeded runs."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            LongTailModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": "Long-tailed classification with ltlight."},
            args=args,
            run=run,
        )


def _wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def configure_wandb_mode() -> None:
    """Run W&B offline unless a key is set and a person is at the terminal: never a login prompt.

    An explicit ``WANDB_MODE`` is respected. Offline runs can be uploaded later with
    ``wandb sync <run dir>``.
    """
    if "WANDB_MODE" in os.environ:
        return
    if not _wandb_has_credentials() or not sys.stdin.isatty():
        os.environ["WANDB_MODE"] = "offline"


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``ltlight`` console script."""
    configure_wandb_mode()
    try:
        LongTailCLI(args=args)
    except USER_ERRORS as error:
        if os.environ.get("LTLIGHT_TRACEBACK"):
            raise
        program = Path(sys.argv[0]).name or "ltlight"
        print(
            f"{program}: error: {type(error).__name__}: {error}\n"
            f"(set LTLIGHT_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
