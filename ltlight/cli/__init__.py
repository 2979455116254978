"""The ``ltlight`` command line: ``ltlight fit|validate|test|predict --config ...`` and
``ltlight two_stage <stage 1> <stage 2> [-- arguments]``.

:mod:`~ltlight.cli.command` holds the command (LightningCLI with ltlight's defaults),
:mod:`~ltlight.cli.runs` the one folder per run and what ``--ckpt_path last`` continues,
:mod:`~ltlight.checkpoints` the checks of a checkpoint the user names and
:mod:`~ltlight.cli.two_stage` decoupled training in one command. :func:`main` is the console
script (``ltlight``, or ``python -m ltlight.cli``).
"""

import os
import re
import signal
import sys

from lightning.pytorch.utilities.exceptions import SIGTERMException

from ltlight.callbacks.run_safety.finite_loss import NonFiniteLossError
from ltlight.cli import two_stage
from ltlight.cli.command import (
    USER_ERRORS,
    ArgumentValueError,
    LongTailCLI,
    RunInterrupted,
    StoppedBySignal,
    condense_error,
    configure_wandb_mode,
    did_you_mean,
    stop_outside_training,
)

__all__ = ["USER_ERRORS", "LongTailCLI", "condense_error", "did_you_mean", "main"]


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``ltlight`` console script (``args``: the command line's)."""
    configure_wandb_mode()
    program = "ltlight"  # also under `python -m ltlight.cli`
    command_line = sys.argv[1:] if args is None else list(args)
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):  # a bare kill would end the process without a word
        signal.signal(signal.SIGTERM, stop_outside_training)
    try:
        _run(program, command_line, args)
    finally:
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)


def _run(program: str, command_line: list[str], args: list[str] | None) -> None:
    try:
        if command_line[:1] == ["two_stage"]:
            two_stage.main(command_line[1:])
        else:
            LongTailCLI(args=args)
    except RunInterrupted as stop:
        # Lightning stops on SIGTERM (and, with InterruptCheckpoint, a first Ctrl-C) by raising a
        # SystemExit without a code, which would report success.
        print(f"{program}: {stop}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except SIGTERMException:
        print(f"{program}: stopped by a signal", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except StoppedBySignal as stop:
        print(f"{program}: {stop}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except NonFiniteLossError as error:
        if os.environ.get("LTLIGHT_TRACEBACK"):
            raise
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as error:
        if os.environ.get("LTLIGHT_TRACEBACK"):
            raise
        # Only jsonargparse's report on an argument is condensed; any other error (a bug, a
        # library's own message) is shown as it is, its cause included.
        message, kind = str(error), type(error).__name__
        if isinstance(error, ArgumentValueError):
            kind = type(error.__cause__).__name__
        elif re.search(r'Parser key "', message):
            message = condense_error(message)
        print(
            f"{program}: error: {kind}: {message}\n(set LTLIGHT_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)
