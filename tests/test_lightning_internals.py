"""One test per assumption ltlight makes about private Lightning / torchmetrics behaviour.

Everything private lives in ``ltlight/_lightning_internals.py``; an upgrade that changes one of
these fails exactly one test here.
"""

import argparse
import re
from pathlib import Path

import lightning as L
import pytest
import torch
import torchmetrics
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ltlight import LongTailModule, _lightning_internals
from ltlight.cli import LongTailCLI
from ltlight.data import DigitsLTDataModule
from ltlight.metrics import LongTailMetrics
from ltlight.models import DigitsNet

ROOT = Path(__file__).resolve().parents[1]
#: Private state that only ltlight/_lightning_internals.py may touch.
PRIVATE = [
    r"_given_hyperparameters",
    r"\.fit_loop\b",
    r"batch_progress",
    r"\._computed\b",
    r"\._trainer\b",
    r"_signal_connector",
    r"received_sigterm\s*=",
    r"\._parser\(",
    r"_option_string_actions",
    r"_parse_ckpt_path",
    r"\bSaveConfigCallback\b",
    r"\._default_root_dir\b",
    r"\._last_lr\b",
]


def test_private_state_is_reached_only_from_the_internals_module():
    offenders = []
    for path in sorted((ROOT / "ltlight").rglob("*.py")):
        if path.name == "_lightning_internals.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(re.search(pattern, line) for pattern in PRIVATE):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_declared_versions_are_the_installed_ones():
    pyproject = (ROOT / "pyproject.toml").read_text()
    lightning_minor = _lightning_internals.TESTED_LIGHTNING
    metrics_minor = _lightning_internals.TESTED_TORCHMETRICS
    assert L.__version__.startswith(lightning_minor + ".")
    assert torchmetrics.__version__.startswith(metrics_minor + ".")
    major, minor = lightning_minor.split(".")
    assert f'"lightning>={lightning_minor},<{major}.{int(minor) + 1}"' in pyproject
    major, minor = metrics_minor.split(".")
    assert f'"torchmetrics>={metrics_minor},<{major}.{int(minor) + 1}"' in pyproject
    readme = (ROOT / "README.md").read_text()
    assert f"Lightning {lightning_minor}" in readme and f"torchmetrics {metrics_minor}" in readme


# -- one test per assumption ------------------------------------------------------------------


def test_lightning_cli_marks_the_hyperparameters_it_gives(tmp_path):
    assert not _lightning_internals.hyperparameters_given_by_cli()
    config = ROOT / "configs" / "digits_lt" / "ce.yaml"
    cli = LongTailCLI(
        args=["--config", str(config), f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    )
    # recorded as the CLI gave them (class paths), which only happens when the flag was seen
    assert cli.model.hparams["backbone"]["class_path"] == "ltlight.models.DigitsNet"
    assert "loss" in cli.model.hparams
    assert not _lightning_internals.hyperparameters_given_by_cli()


class ProgressProbe(L.Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.start = _lightning_internals.processed_batches_in_epoch(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        done = _lightning_internals.processed_batches_in_epoch(trainer)
        self.seen.append((batch_idx, self.start, done))


def test_fit_loop_counts_the_processed_batches_of_the_epoch():
    probe = ProgressProbe()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[probe],
    )
    trainer.fit(LongTailModule(DigitsNet()), datamodule=DigitsLTDataModule(batch_size=16))
    # before a batch: the batches done so far; after its step: one more; restarting each epoch
    assert probe.seen == [(i, i, i + 1) for i in range(3)] * 2


def test_torchmetrics_caches_compute_until_forgotten():
    metric = LongTailMetrics(3)
    metric.update(torch.eye(3)[[0, 1, 2, 2]], torch.tensor([0, 1, 1, 2]))
    first = metric.compute()
    assert metric.compute() is first  # cached
    _lightning_internals.forget_computed(metric)
    again = metric.compute()
    assert again is not first
    torch.testing.assert_close(again["error"], first["error"])  # the states stayed


class SigtermAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step
        self.handled: bool | None = None
        self.steps_after = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            self.handled = _lightning_internals.stop_as_on_sigterm(None)
        elif self.handled:
            self.steps_after += 1


def test_lightning_sigterm_handler_stops_fit_at_the_batch_end():
    probe = SigtermAt(step=2)
    trainer = L.Trainer(
        max_epochs=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[probe],
    )
    with pytest.raises(SIGTERMException):
        trainer.fit(LongTailModule(DigitsNet()), datamodule=DigitsLTDataModule(batch_size=16))
    assert probe.handled is True
    assert trainer.global_step == 3 and probe.steps_after == 0  # the batch finished, no other
    assert trainer.received_sigterm


class StopAfter(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            _lightning_internals.request_stop(trainer)


def test_setting_the_sigterm_flag_stops_fit_after_the_current_batch():
    trainer = L.Trainer(
        max_epochs=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[StopAfter(step=4)],
    )
    with pytest.raises(SIGTERMException):
        trainer.fit(LongTailModule(DigitsNet()), datamodule=DigitsLTDataModule(batch_size=16))
    assert trainer.global_step == 4 and trainer.received_sigterm


def test_trainer_default_root_dir_is_the_value_it_stores(tmp_path):
    trainer = L.Trainer(default_root_dir=tmp_path / "a", logger=False, enable_progress_bar=False)
    assert trainer.default_root_dir == str(tmp_path / "a")
    _lightning_internals.set_default_root_dir(trainer, str(tmp_path / "b"))
    assert trainer.default_root_dir == str(tmp_path / "b")


def test_argparse_keeps_every_option_string():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_epochs", type=int)
    assert set(_lightning_internals.option_strings(parser)) == {"-h", "--help", "--max_epochs"}
    lightning_parser = LightningArgumentParser()
    lightning_parser.add_argument("--trainer.max_epochs", type=int)
    assert "--trainer.max_epochs" in _lightning_internals.option_strings(lightning_parser)


class Stop(Exception):
    """Raised by a probe CLI before it instantiates anything."""


def cli_until_instantiation(cli_class, *args, **kwargs):
    """Run ``cli_class``'s parsing and stop before it builds any class: the stopped CLI."""
    seen = {}

    class Probe(cli_class):
        def before_instantiate_classes(self) -> None:
            seen["cli"] = self
            raise Stop

    with pytest.raises(Stop):
        Probe(*args, **kwargs)
    return seen["cli"]


def test_lightning_cli_gives_the_parser_of_a_subcommand(tmp_path):
    config = ROOT / "configs" / "digits_lt" / "ce.yaml"
    args = ["fit", "--config", str(config), f"--trainer.default_root_dir={tmp_path}"]
    cli = cli_until_instantiation(LongTailCLI, args=args)
    assert callable(getattr(LightningCLI, "_parser", None))
    fit = _lightning_internals.subcommand_parser(cli, "fit")
    assert fit is not cli.parser and _lightning_internals.subcommand_parser(cli, None) is cli.parser
    assert "--trainer.max_epochs" in _lightning_internals.option_strings(fit)
    assert "max_epochs: 40" in fit.dump(cli.config["fit"])  # it reads the subcommand's section


def test_lightning_cli_calls_the_checkpoint_hook_once_between_parsing_and_instantiating(tmp_path):
    assert callable(getattr(LightningCLI, "_parse_ckpt_path", None))
    calls = []

    class Probe(_lightning_internals.CheckpointArgumentsHook):
        def parse_arguments(self, parser, args) -> None:
            super().parse_arguments(parser, args)
            calls.append("parse_arguments")

        def after_parsing(self) -> None:
            calls.append(("after_parsing", self.config is not None))
            super().after_parsing()

    config = ROOT / "configs" / "digits_lt" / "dataset.yaml"  # Lightning's own parsing
    args = ["--config", str(config), f"--trainer.default_root_dir={tmp_path}"]
    cli_until_instantiation(
        Probe, LongTailModule, L.LightningDataModule, subclass_mode_model=True,
        subclass_mode_data=True, args=args, run=False,
    )  # fmt: skip
    assert calls == ["parse_arguments", ("after_parsing", True)]


def test_lightning_takes_the_model_arguments_from_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    hparams = {
        "_class_path": "ltlight.LongTailModule",
        "backbone": {"class_path": "ltlight.models.DigitsNet"},
        "loss": {"class_path": "ltlight.losses.LDAMLoss"},
    }
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, checkpoint)
    config = ROOT / "configs" / "digits_lt" / "dataset.yaml"
    args = ["validate", "--config", str(config), f"--ckpt_path={checkpoint}"]
    cli = cli_until_instantiation(
        _lightning_internals.CheckpointArgumentsHook, LongTailModule, L.LightningDataModule,
        subclass_mode_model=True, subclass_mode_data=True, args=args,
    )  # fmt: skip
    assert "LDAMLoss" in str(cli.config["validate"]["model"])  # the config: the default loss


def test_lightning_config_callback_writes_in_setup_only(tmp_path):
    parser = ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    config = parser.parse_args([])
    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    module = LongTailModule(DigitsNet())
    callback = SaveConfigCallback(parser, config)
    assert callback.already_saved is False
    assert callback.parser is parser and callback.config is config
    hooks = [name for name in vars(Callback) if name.startswith("on_") or name == "teardown"]
    assert all(getattr(SaveConfigCallback, hook) is getattr(Callback, hook) for hook in hooks)
    asked = _lightning_internals.SaveConfigWhenAsked(parser, config)
    asked.setup(trainer, module, "fit")
    assert not (tmp_path / "config.yaml").exists() and asked.stage == "fit"
    callback.setup(trainer, module, "fit")
    assert (tmp_path / "config.yaml").read_text() == "epochs: 3\n"
    assert callback.already_saved is True
    (tmp_path / "config.yaml").unlink()
    callback.setup(trainer, module, "fit")  # saved once: not again
    assert not (tmp_path / "config.yaml").exists()


def test_torch_schedulers_report_the_rate_remembered_in_last_lr():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    optimizer.param_groups[0]["lr"] = 0.025  # changed outside step(), as ltlight's schedules do
    assert scheduler.get_last_lr() == [0.1]
    _lightning_internals.remember_last_lr(scheduler)
    assert scheduler.get_last_lr() == [0.025]
