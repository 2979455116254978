"""The ``ltlight`` command: LightningCLI over :class:`~ltlight.LongTailModule` and any datamodule.

``ltlight fit --config configs/digits_lt/ldam_drw.yaml`` — every part (backbone, loss, callbacks,
datamodule, logger) is named by ``class_path``, so a user's own classes work from YAML too.
"""

import netrc
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from ltlight.module import LongTailModule

#: Errors our constructors and set-up (and Lightning's Trainer, for its own arguments) raise on
#: bad input; shown as one line, not a traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, MisconfigurationException)


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


class SaveConfigOnceStarted(SaveConfigCallback):
    """Writes ``config.yaml`` once set-up (and any checkpoint restore) has succeeded.

    Lightning's callback writes it in ``setup``, before the module's own checks: a run that then
    fails on a bad argument would overwrite the config of an earlier run in the same folder.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stage = stage

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().setup(trainer, pl_module, self._stage)

    on_fit_start = on_validation_start = on_test_start = on_predict_start = _save


def implicit_resume_checkpoint(trainer: L.Trainer) -> Path | None:
    """The checkpoint ``fit`` resumes from when it is given no ``ckpt_path``, or ``None``.

    Lightning 2.6 resumes from ``"last"`` whenever an ``OnExceptionCheckpoint`` is configured:
    the newest of that callback's file and the ``last*.ckpt`` of each ``ModelCheckpoint`` folder
    (a fixed folder: ``dirpath``, or ``<default_root_dir>/checkpoints`` without a logger).
    """
    if not any(isinstance(c, OnExceptionCheckpoint) for c in trainer.callbacks):
        return None
    candidates = []
    for callback in trainer.callbacks:
        if isinstance(callback, OnExceptionCheckpoint):
            candidates.append(Path(callback.ckpt_path))
        elif isinstance(callback, ModelCheckpoint):
            folder = callback.dirpath
            if folder is None and trainer.logger is None:
                folder = os.path.join(trainer.default_root_dir, "checkpoints")
            if folder is not None:
                candidates += Path(folder).glob("last*.ckpt")
    existing = [path for path in candidates if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime) if existing else None


def _differences(saved: dict[str, Any] | None, current: dict[str, Any], prefix: str) -> list[str]:
    if saved is None:
        return []
    keys = sorted(set(saved) | set(current), key=str)
    return [f"{prefix}.{k}" for k in keys if saved.get(k) != current.get(k)]


class LongTailCLI(LightningCLI):
    """LightningCLI with ltlight's defaults: model and data in subclass mode, seeded runs.

    ``fit`` without ``--ckpt_path`` resumes an interrupted run only if that run had the same
    model and data arguments (Lightning would resume from any); otherwise it stops with an error
    that names the checkpoint.
    """

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        super().__init__(
            LongTailModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            parser_class=_ArgumentParser,
            save_config_callback=SaveConfigOnceStarted,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": "Long-tailed classification with ltlight."},
            args=args,
            run=run,
        )

    def before_fit(self) -> None:
        if self.config_init[self.subcommand].get("ckpt_path") is not None:
            return
        path = implicit_resume_checkpoint(self.trainer)
        if path is None:
            return
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        differences = _differences(
            saved.get("hyper_parameters"), dict(self.model.hparams), "model"
        ) + _differences(
            saved.get("datamodule_hyper_parameters"), dict(self.datamodule.hparams), "data"
        )
        if differences:
            raise ValueError(
                f"ckpt_path: without --ckpt_path Lightning resumes from {path}, but that run had "
                f"other arguments ({', '.join(differences)}): continue it with --ckpt_path={path}, "
                "or move it away to start afresh"
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
    program = "ltlight"  # also under `python -m ltlight.cli`
    try:
        LongTailCLI(args=args)
    except SIGTERMException:
        # Lightning stops on SIGTERM (and, with InterruptCheckpoint, a first Ctrl-C) by raising a
        # SystemExit without a code, which would report success.
        print(
            f"{program}: stopped by a signal at the end of a training batch; a checkpoint "
            "callback (InterruptCheckpoint) saved the run: continue it with --ckpt_path last",
            file=sys.stderr,
        )
        sys.exit(128 + signal.SIGTERM)
    except USER_ERRORS as error:
        if os.environ.get("LTLIGHT_TRACEBACK"):
            raise
        print(
            f"{program}: error: {type(error).__name__}: {condense_error(str(error))}\n"
            f"(set LTLIGHT_TRACEBACK=1 to see the traceback)",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
