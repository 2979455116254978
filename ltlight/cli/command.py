"""The ``ltlight`` command: LightningCLI over :class:`~ltlight.LongTailModule` and any datamodule.

``ltlight fit --config configs/digits_lt/ldam_drw.yaml`` — every part (backbone, loss, callbacks,
datamodule, logger) is named by ``class_path``, so a user's own classes work from YAML too.
"""

import difflib
import enum
import netrc
import os
import re
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from ltlight._lightning_internals import (
    CheckpointArgumentsHook,
    SaveConfigWhenAsked,
    option_strings,
    subcommand_parser,
)
from ltlight.callbacks.prediction_writer import PredictionWriter
from ltlight.callbacks.run_safety.interrupt_checkpoint import InterruptCheckpoint
from ltlight.checkpoints import AtomicCheckpointIO, read_checkpoint
from ltlight.cli.configs import compose_arguments
from ltlight.cli.runs import (
    CHECKPOINTS,
    RUN_CONFIG,
    RUNS_ROOT,
    RankZeroRunFolder,
    checkpoint_differences,
    discard_if_empty,
    discard_unstarted,
    find_last_checkpoint,
    launched_as_rank_zero,
    lock_run,
    new_run_dir,
    refuse_existing_run,
    run_dir_of_checkpoint,
    run_identity,
)
from ltlight.module import LongTailModule

# Lightning's own callbacks default to str-valued enums (Timer's `interval`) that YAML cannot
# write, so a config with them could be neither saved nor printed: write the enum's value.
yaml.SafeDumper.add_multi_representer(
    enum.Enum, lambda dumper, value: dumper.represent_data(value.value)
)

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
    """Reports a bad argument in one line that names it (the full report with LTLIGHT_TRACEBACK);
    suggests the argument meant for a misspelt one; takes no abbreviations (``--trainer.max_epoch``
    is not ``--trainer.max_epochs``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> None:
        if not os.environ.get("LTLIGHT_TRACEBACK"):
            message = condense_error(message)
        message += did_you_mean(message, option_strings(self))
        super().error(message, ex)


def did_you_mean(message: str, options: list[str]) -> str:
    """`` (did you mean --trainer.max_epochs?)`` for an unrecognised option close to a known one."""
    if "unrecognized arguments" not in message:
        return ""
    suggestions = []
    for given in re.findall(r"(--[\w.]+)", message):
        close = difflib.get_close_matches(given, options, n=1, cutoff=0.8)
        if close:
            suggestions.append(f"{given} → {close[0]}")
    return f" (did you mean: {', '.join(suggestions)}?)" if suggestions else ""


class SaveConfigOnceStarted(SaveConfigWhenAsked):
    """Writes the run's config into its folder once set-up (and any checkpoint restore) succeeded.

    ``config.yaml`` for ``fit``, ``<stage>_config.yaml`` for ``validate``/``test``,
    ``predict_config-<checkpoint name>.yaml`` for ``predict`` (so evaluating a run's checkpoint
    keeps the config that trained it), in the trainer's
    ``default_root_dir`` — the run folder. Lightning's callback writes in ``setup``, before the
    module's own checks, to the logger's folder; a run that then fails on a bad argument would
    overwrite an earlier run's config. To W&B the resolved config goes as the run's config.
    """

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            folder = Path(trainer.default_root_dir)
            folder.mkdir(parents=True, exist_ok=True)
            stage = getattr(self.stage, "value", self.stage)
            name = RUN_CONFIG if stage == "fit" else f"{stage}_{RUN_CONFIG}"
            if stage == "predict" and trainer.ckpt_path:  # one per checkpoint predicted with
                name = f"predict_config-{Path(trainer.ckpt_path).stem}.yaml"
            self.parser.save(self.config, str(folder / name), overwrite=True, multifile=False)
            self.save_config(trainer, pl_module, self.stage)
        self.already_saved = True

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                dump = yaml.safe_load(self.parser.dump(self.config))
                logger.experiment.config.update({"ltlight": dump}, allow_val_change=True)

    on_fit_start = on_validation_start = on_test_start = on_predict_start = _save


class ArgumentValueError(ValueError):
    """A constructor refused the value of a command-line or config argument (the message is
    jsonargparse's report, condensed to the argument and the constructor's reason)."""


class RunInterrupted(Exception):
    """Training stopped on SIGTERM or Ctrl-C; the message says what was saved where."""


class StoppedBySignal(BaseException):
    """SIGTERM came while no trainer was training (starting, or after the training ended)."""


def stop_outside_training(signum: int, frame: Any) -> None:
    """``ltlight``'s SIGTERM handler outside training: raise :class:`StoppedBySignal`.

    During ``fit`` Lightning installs its own handler and calls this one after it; then it does
    nothing, and Lightning stops training at the end of the batch (:class:`RunInterrupted`).
    """
    if signal.getsignal(signal.SIGTERM) is stop_outside_training:
        raise StoppedBySignal("stopped by SIGTERM outside training (starting or finishing)")


def finish_wandb_run(exit_code: int = 0) -> None:
    """End the process's current W&B run, if one is open (the next logger starts its own)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def _short_class_name(config: Any, default: str) -> str:
    path = config.get("class_path") if isinstance(config, dict) else None
    return str(path).rsplit(".", 1)[-1] if path else default


class LongTailCLI(CheckpointArgumentsHook):
    """LightningCLI with ltlight's defaults: model and data in subclass mode, seeded runs, one
    folder per run (:mod:`ltlight.cli.runs`).

    Every run writes to its own folder, ``runs/<dataset>/<method>/<run name>`` (``--run_name``,
    by default the start time; ``--run_dir`` names the whole folder; ``--trainer.default_root_dir``
    replaces ``runs``). A run never continues an old one unless asked: ``--ckpt_path last`` is
    this config's newest run's checkpoint, or an error listing the runs found; a checkpoint file
    given with ``--ckpt_path`` must have the config's model and data arguments (an error names
    the ones that differ) unless ``--use_ckpt_config=true`` takes them from the checkpoint.
    ``--config configs/<dataset>/<method>.yaml`` is composed from the dataset's and the method's
    files (:mod:`ltlight.cli.configs`). ``wandb_defaults`` are W&B run arguments (``group``,
    ``job_type``) a config's own ``dict_kwargs`` may override; the group is the method by default.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        wandb_defaults: dict[str, Any] | None = None,
    ) -> None:
        self.wandb_defaults = dict(wandb_defaults or {})
        self.run_dir: Path | None = None
        self.created_run_dir = False
        self.config_files: list[str] = []
        try:
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
        except BaseException:
            # A start that failed leaves no run folder it made that holds no run (rank 0's).
            if self.run_dir is not None and launched_as_rank_zero():
                if self.created_run_dir:
                    finish_wandb_run(exit_code=1)
                    discard_unstarted(self.run_dir)
                else:
                    discard_if_empty(self.run_dir)
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--run_name",
            type=str | None,
            default=None,
            help="name of the run folder runs/<dataset>/<method>/<run_name> (default: start time)",
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="the run's folder itself, instead of runs/<dataset>/<method>/<run_name>",
        )
        parser.add_argument(
            "--use_ckpt_config",
            type=bool,
            default=False,
            help="take the model and data arguments from --ckpt_path's checkpoint instead of "
            "refusing a checkpoint whose arguments differ from the config",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse ``args`` (``None``: the command line) with each composed ``--config`` expanded.

        Unlike LightningCLI's, it does not warn when ``args`` come beside a command line:
        ``ltlight two_stage`` gives each stage its own, and leaves the command line whole for
        Lightning's DDP launcher, which starts the other processes with it.
        """
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
            return
        composition = compose_arguments(sys.argv[1:] if args is None else args)
        self.config_files = composition.config_files
        self.config = parser.parse_args(composition.args)

    # -- the run folder and the checkpoint, decided before anything is built ----------------
    def _section(self) -> Namespace:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _section_dump(self) -> dict[str, Any]:
        subcommand = self.config.get("subcommand")
        parser = subcommand_parser(self, subcommand)
        return yaml.safe_load(parser.dump(self._section())) or {}

    def after_parsing(self) -> None:
        # Lightning's version replaces the config's model arguments with the checkpoint's without
        # a word; here a checkpoint must match the config, or the user asks for its arguments.
        section, dump = self._section(), self._section_dump()
        fallback = (
            _short_class_name(dump.get("data"), "data"),
            _short_class_name((dump.get("model") or {}).get("init_args", {}).get("loss"), "run"),
        )
        dataset, method = run_identity(self.config_files or section.get("config") or [], fallback)
        root = Path(section.get("trainer.default_root_dir") or RUNS_ROOT)
        method_dir = root / dataset / method
        self.run_identity = (dataset, method)
        ckpt_path = section.get("ckpt_path")
        run_dir, own_dir = section.get("run_dir"), None  # own_dir: the checkpoint's run folder
        if ckpt_path == "last":
            own_dir, ckpt_file = find_last_checkpoint(method_dir, dump)
            section["ckpt_path"] = str(ckpt_file)
            run_dir = run_dir or own_dir
        elif ckpt_path not in (None, "best", "hpc"):
            checkpoint = read_checkpoint(ckpt_path)
            if section.get("use_ckpt_config"):
                self.model_arguments_from_checkpoint()
                self._data_from_checkpoint(checkpoint)
            else:
                differences = checkpoint_differences(checkpoint, dump)
                if differences:
                    raise ValueError(
                        f"ckpt_path: {ckpt_path} was made with other arguments than this config "
                        f"({', '.join(differences)}): give the matching --config, or "
                        "--use_ckpt_config=true to take the model and data from the checkpoint"
                    )
            own_dir = run_dir_of_checkpoint(ckpt_path)
            run_dir = run_dir or own_dir
        new = run_dir is None
        if new:  # only rank 0 creates it; another rank learns it at set-up
            run_dir = new_run_dir(method_dir, section.get("run_name"), launched_as_rank_zero())
        self.run_dir = Path(run_dir)
        if self.config.get("subcommand") in (None, "fit") and launched_as_rank_zero():
            created = (new and not section.get("run_name")) or not self.run_dir.exists()
            self._hold_run_folder(own_dir, created)

    def _hold_run_folder(self, own_dir: Path | None, created: bool) -> None:
        """Refuse a folder that holds another run, then hold the run's lock while this command
        lives; a start that fails removes a folder it created, unless the run began."""
        section = self._section()
        continuing = own_dir is not None and Path(own_dir).resolve() == self.run_dir.resolve()
        if not continuing:
            argument = "run_dir" if section.get("run_dir") else "run_name"
            refuse_existing_run(self.run_dir, argument)
        self.created_run_dir = created and not continuing
        lock_run(self.run_dir)

    def _data_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hparams = dict(checkpoint.get("datamodule_hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if "_class_path" not in hparams:
            return
        data = {"class_path": hparams.pop("_class_path"), "init_args": hparams}
        subcommand = self.config.get("subcommand")
        self.config = self.parser.parse_object({subcommand: {"data": data}}, self.config)

    def before_instantiate_classes(self) -> None:
        section = self._section()
        section["trainer.default_root_dir"] = str(self.run_dir)
        dataset, method = self.run_identity
        loggers = section.get("trainer.logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if not isinstance(logger, Namespace) or not logger.get("class_path"):
                continue
            logger["init_args.save_dir"] = str(self.run_dir)
            if logger["class_path"].endswith("WandbLogger"):
                if not logger.get("init_args.name"):
                    logger["init_args.name"] = f"{method}/{self.run_dir.name}"
                extra = logger.get("dict_kwargs") or {}
                for key, value in {"group": method, **self.wandb_defaults}.items():
                    extra.setdefault(key, value)
                extra.setdefault("tags", [dataset, method])
                logger["dict_kwargs"] = extra

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            if "Union subtypes" not in str(error) and 'Parser key "' not in str(error):
                raise  # not jsonargparse's report: the constructor's own words
            raise ArgumentValueError(condense_error(str(error))) from error
        self._follow_checkpoint_classes()

    def _follow_checkpoint_classes(self) -> None:
        """Index the data's classes by the checkpoint's class names (a class folder renamed or
        added since training would shift the labels; then the data refuses, naming it)."""
        ckpt_path = self._section().get("ckpt_path")
        follow = getattr(self.datamodule, "follow_class_names", None)
        if follow is None or ckpt_path in (None, "best", "hpc", "last"):
            return
        preprocessing = read_checkpoint(ckpt_path).get("ltlight_preprocessing") or {}
        if preprocessing.get("class_names"):
            follow(list(preprocessing["class_names"]))

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.insert(0, RankZeroRunFolder(self.run_dir))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own plugin
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(self.run_dir / CHECKPOINTS)
            elif isinstance(callback, InterruptCheckpoint) and callback.dirpath is None:
                callback.dirpath = str(self.run_dir)
        return trainer

    # -- subcommands ---------------------------------------------------------------------------
    def fit(self, model: L.LightningModule, **kwargs: Any) -> None:
        try:
            self.trainer.fit(model, **kwargs)
        except SIGTERMException as stop:
            raise RunInterrupted(self._interrupted_message()) from stop

    def predict(self, model: L.LightningModule, **kwargs: Any) -> None:
        """Write ``predictions-<checkpoint name>.csv`` into the run's folder
        (:class:`PredictionWriter`): predicting with ``best.ckpt`` then ``last.ckpt`` keeps both."""
        if not kwargs.get("ckpt_path"):
            raise ValueError(
                "ckpt_path: predict needs the trained weights: --ckpt_path=FILE (a checkpoint of "
                "a run) or --ckpt_path=last (this config's newest run)"
            )
        writer = next((c for c in self.trainer.callbacks if isinstance(c, PredictionWriter)), None)
        if writer is None:
            writer = PredictionWriter()
            self.trainer.callbacks.append(writer)
        if writer.path is None:  # rank 0 writes, into its run folder
            writer.path = str(self.run_dir / f"predictions-{Path(kwargs['ckpt_path']).stem}.csv")
        kwargs["return_predictions"] = False
        with warnings.catch_warnings():
            # Batch indices only serve epoch-level writers; this one writes batch by batch.
            warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
            self.trainer.predict(model, **kwargs)
        if self.trainer.is_global_zero:
            calibration = ""
            temperature = float(getattr(model, "temperature", 1.0))
            tau = float(getattr(model, "logit_adjustment_tau", 0.0))
            if temperature != 1.0 or tau != 0.0:
                calibration = f", probabilities calibrated: temperature {temperature:g}, τ {tau:g}"
            print(f"predictions: {writer.written_to} ({writer.rows} rows{calibration})")

    def _interrupted_message(self) -> str:
        savers = [c for c in self.trainer.callbacks if isinstance(c, InterruptCheckpoint)]
        if not savers:
            return (
                "stopped by a signal at the end of a training batch; no InterruptCheckpoint "
                "callback is configured, so the run continues only from its last epoch: "
                "--ckpt_path last"
            )
        saver = savers[0]
        resume = "--ckpt_path last"
        if saver.saved_to is not None and saver.save_error is not None:
            resume = f"--ckpt_path {saver.saved_to}"
        elif saver.saved_to is None:
            resume = "--ckpt_path last (from its last finished epoch)"
        return (
            f"stopped by a signal at the end of a training batch; {saver.describe()}: continue "
            f"it with the same command and {resume}"
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
