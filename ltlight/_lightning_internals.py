"""Every place ltlight relies on private or version-specific Lightning / torchmetrics / torch
behaviour.

Public APIs are used everywhere else. What is here has no public counterpart in the tested
versions; each function states its assumption, and ``tests/test_lightning_internals.py`` checks
each one against the installed packages, so an upgrade that changes one fails one named test
instead of a training run. Tested versions: :data:`TESTED_LIGHTNING` and
:data:`TESTED_TORCHMETRICS` (also in ``pyproject.toml`` and the README).

The two LightningCLI hooks the command overrides live here too, as small base classes:
:class:`CheckpointArgumentsHook` (the step between parsing and instantiating) and
:class:`SaveConfigWhenAsked` (a config callback that does not write in ``setup``).
"""

import argparse
import signal
from collections.abc import Callable
from types import FrameType

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import Metric

#: The Lightning minor versions CI runs (``lightning>=2.6,<2.7`` in pyproject.toml).
TESTED_LIGHTNING = "2.6"
#: The torchmetrics minor versions CI runs (``torchmetrics>=1.9,<1.10``).
TESTED_TORCHMETRICS = "1.9"


def hyperparameters_given_by_cli() -> bool:
    """Whether LightningCLI is instantiating the module now.

    Assumption: LightningCLI sets the context variable
    ``lightning.pytorch.core.mixins.hparams_mixin._given_hyperparameters`` to the primitive
    arguments (class paths and init args) while it calls the module's constructor, and
    ``save_hyperparameters`` then records those instead of the objects.
    """
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

    return _given_hyperparameters.get() is not None


def processed_batches_in_epoch(trainer: L.Trainer) -> int:
    """The training batches of the current epoch whose optimiser step is done.

    Assumption: ``trainer.fit_loop.epoch_loop.batch_progress.current.processed`` counts them,
    and it is what Lightning saves and resumes at (a batch handed out but not trained on when a
    checkpoint is saved is run again on resume).
    """
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


def forget_computed(metric: Metric) -> None:
    """Drop a torchmetrics ``Metric``'s cached ``compute()`` result (the states stay).

    Assumption: with ``compute_with_cache`` (the default) the result is cached in
    ``metric._computed`` until ``update`` or ``reset``, and ``None`` there means "not computed".
    """
    metric._computed = None


def stop_as_on_sigterm(frame: FrameType | None) -> bool:
    """Ask a running ``trainer.fit`` to stop at the end of the batch, as SIGTERM does.

    Assumption: during ``fit`` Lightning's signal connector has installed a callable SIGTERM
    handler that sets ``trainer.received_sigterm`` (checked by the loops after each batch) and,
    in the DDP launcher's process, forwards the signal to the other processes. Returns ``False``
    (and does nothing) when no callable handler is installed.
    """
    handler: Callable | int | None = signal.getsignal(signal.SIGTERM)
    if not callable(handler):
        return False
    # With SIGTERM's number, so that the DDP launcher forwards SIGTERM to its children.
    handler(signal.SIGTERM, frame)
    return True


def request_stop(trainer: L.Trainer) -> None:
    """Make ``trainer.fit`` raise ``SIGTERMException`` at the end of the current training batch.

    Assumption: the training loop checks ``trainer.received_sigterm`` — the signal connector's
    ``received_sigterm`` flag — after each batch (after ``on_train_batch_end``) and raises
    ``SIGTERMException`` then. Setting it on every DDP rank in the same batch stops all of them
    on the same batch boundary, with no collective inside a signal handler.
    """
    trainer._signal_connector.received_sigterm = True


def remember_last_lr(scheduler: LRScheduler) -> None:
    """Make ``scheduler.get_last_lr()`` return the optimiser's current rates.

    Assumption: torch's ``LRScheduler.get_last_lr()`` returns ``scheduler._last_lr``, which only
    ``step()`` sets; a schedule whose rates change outside ``step()`` (ltlight's, once the run's
    length is known) sets it here, so Lightning's ``LearningRateMonitor`` logs the real rate.
    """
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


# -- the command line (ltlight.cli) ----------------------------------------------------------


def set_default_root_dir(trainer: L.Trainer, path: str) -> None:
    """Make ``trainer.default_root_dir`` return ``path`` (the ``Trainer`` gives no setter).

    Assumption: the read-only property ``Trainer.default_root_dir`` returns
    ``trainer._default_root_dir`` (normalised), which the constructor stores.
    """
    trainer._default_root_dir = path


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string ``parser`` accepts (``--trainer.max_epochs``, ``-c``, ...).

    Assumption: argparse (and jsonargparse's parser, its subclass) keeps them as the keys of
    ``parser._option_string_actions``.
    """
    return list(parser._option_string_actions)


def subcommand_parser(cli: LightningCLI, subcommand: str | None) -> LightningArgumentParser:
    """The parser of ``subcommand`` (``fit``, ...); ``None``: the main parser.

    Assumption: ``LightningCLI._parser(subcommand)`` returns it.
    """
    return cli._parser(subcommand)


class CheckpointArgumentsHook(LightningCLI):
    """LightningCLI whose step between parsing and instantiating is :meth:`after_parsing`.

    Assumption: ``LightningCLI.__init__`` calls ``self._parse_ckpt_path()`` once, after
    ``parse_arguments`` has set ``self.config`` and before ``before_instantiate_classes``; and
    Lightning's own version replaces the config's model arguments with the hyper-parameters saved
    in the checkpoint of ``--ckpt_path`` (what :meth:`model_arguments_from_checkpoint` does).
    """

    def _parse_ckpt_path(self) -> None:
        self.after_parsing()

    def after_parsing(self) -> None:
        """Lightning's behaviour; a subclass decides what ``--ckpt_path`` means here."""
        self.model_arguments_from_checkpoint()

    def model_arguments_from_checkpoint(self) -> None:
        """Take the model's arguments from the checkpoint of ``--ckpt_path`` (Lightning's way)."""
        LightningCLI._parse_ckpt_path(self)


class SaveConfigWhenAsked(SaveConfigCallback):
    """A LightningCLI config callback that writes nothing in ``setup``: a subclass saves the
    config (``self.parser.save(self.config, ...)``) when it chooses and sets ``already_saved``.

    Assumption: Lightning's config callback writes the config in its ``setup`` hook and in no
    other hook, keeps the parser and the parsed config as ``parser`` and ``config``, and skips
    writing once ``already_saved`` is true.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.stage = stage
