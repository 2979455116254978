"""The ``ltlight`` command: LightningCLI over :class:`~ltlight.LongTailModule` and any datamodule.

``ltlight fit --config configs/digits_lt/ldam_drw.yaml`` — every part (backbone, loss, callbacks,
datamodule, logger) is named by ``class_path``, so a user's own classes work from YAML too.
"""

import netrc
import os
import re
import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ltlight.module import LongTailModule

#: Errors our constructors and set-up raise on bad input; shown as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes:|Errors:|Given value type:|"
    r"Expected a <class 'NoneType'>)"
)


def condense_error(message: str) -> str:
    """jsonargparse's nested Union report → one line naming the argument and what is wrong.

    ``Parser key "model" … Parser key "loss" … module has no attribute 'Nope'`` becomes
    ``model.loss: … module has no attribute 'Nope'``; messages of another shape pass unchanged.
    """
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys and "Union subtypes" not in message:
        return message
    details, given = [], None
    for line in message.splitlines():
        line = line.strip().removeprefix("- ").strip()
        line = re.sub(r'^Parser key "[^"]+":\s*', "", line)
        if line.startswith("Given value:"):
            given = given or line.removeprefix("Given value:").strip()
        elif line and not _NOISE.match(line):
            details.append(line)
    key = ".".join(keys)
    detail = " ".join(details[-2:]) if details else "invalid value"
    if given is not None and "NestedArg" not in given and "Namespace(" not in given:
        detail += f" (given: {given})"
    return f"{key}: {detail}" if key else detail


class _ArgumentParser(LightningArgumentParser):
    """Reports a bad argument in one line that names it (the full report with LTLIGHT_TRACEBACK)."""

    def error(self, message: str, ex: Exception | None = None) -> None:
        if not os.environ.get("LTLIGHT_TRACEBACK"):
            message = condense_error(message)
        super().error(message, ex)


class LongTailCLI(LightningCLI):
    """LightningCLI with ltlight's defaults: model and data in subclass mode, seeded runs."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            LongTailModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_class=_ArgumentParser,
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
            f"{program}: error: {type(error).__name__}: {condense_error(str(error))}\n"
            f"(set LTLIGHT_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
