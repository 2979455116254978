"""A sweep of bad inputs: each ends in one clear error that names the argument, and a failed
`ltlight fit` leaves the files of an earlier good run in the same folder as they were.

Python inputs must raise one of the errors the command line shows as a single line
(``ltlight.cli.USER_ERRORS``); command lines run the console script's ``main`` in-process and must
exit with status 2, no traceback, the argument named in the last lines of stderr.
"""

import hashlib
from pathlib import Path

import bad_data
import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ltlight import LongTailModule
from ltlight.callbacks import (
    DeferredResampling,
    DeferredReweighting,
    InterruptCheckpoint,
    TaiLrGammaSchedule,
)
from ltlight.cli import USER_ERRORS, main
from ltlight.data import (
    CIFAR10LTDataModule,
    DigitsLTDataModule,
    FashionMNISTLTDataModule,
    long_tail_counts,
)
from ltlight.data.sampling import EpochSampler
from ltlight.data.tensor.loader import DeviceDataLoader
from ltlight.losses import (
    FocalLoss,
    GHMCLoss,
    LDAMLoss,
    TaiLrLoss,
    effective_number,
)
from ltlight.metrics import LongTailMetrics
from ltlight.models import DigitsNet

ROOT = Path(__file__).resolve().parents[1]
QUICK_START = ROOT / "configs" / "digits_lt" / "ldam_drw.yaml"
MISSING = "/nonexistent/ltlight-data"


class PlainData(L.LightningDataModule):
    """A user's datamodule: a torch DataLoader and the ``class_counts`` it declares."""

    def __init__(self, class_counts):
        super().__init__()
        self.class_counts = class_counts

    def train_dataloader(self):
        images = torch.zeros(20, 1, 8, 8)
        return DataLoader(TensorDataset(images, torch.arange(20) % 10), batch_size=10)


def fit(module, datamodule, callbacks=()):
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=datamodule)


def fashion_without_any_copy():
    class NoSystemCopy(FashionMNISTLTDataModule):
        system_dir = MISSING + "-system"

    NoSystemCopy(data_dir=MISSING, download=False).setup("fit")


PYTHON_INPUTS = {
    # arguments out of range
    "ldam max_m=0": (lambda: LDAMLoss(max_m=0), ["max_m"]),
    "ldam s=-1": (lambda: LDAMLoss(s=-1.0), ["s must be > 0"]),
    "focal gamma=-1": (lambda: FocalLoss(gamma=-1.0), ["gamma"]),
    "ghm bins=0": (lambda: GHMCLoss(bins=0), ["bins"]),
    "ghm momentum=1": (lambda: GHMCLoss(momentum=1.0), ["momentum"]),
    "tailr gamma=1.5": (lambda: TaiLrLoss(gamma=1.5), ["gamma"]),
    "tailr threshold=-0.1": (lambda: TaiLrLoss(threshold=-0.1), ["threshold"]),
    "effective_number beta=1": (lambda: effective_number([10, 5], beta=1.0), ["beta"]),
    "imbalance_ratio=0.5": (lambda: DigitsLTDataModule(imbalance_ratio=0.5), ["imbalance_ratio"]),
    "batch_size=0": (lambda: DigitsLTDataModule(batch_size=0), ["batch_size"]),
    "step_fraction=1.5": (
        lambda: DigitsLTDataModule(profile="step", step_fraction=1.5),
        ["step_fraction"],
    ),
    "drw start_epoch=-1": (lambda: DeferredReweighting(start_epoch=-1), ["start_epoch"]),
    "gamma schedule ends first": (
        lambda: TaiLrGammaSchedule(start_epoch=5, end_epoch=2),
        ["end_epoch", "start_epoch"],
    ),
    "module ece_bins=0": (lambda: LongTailModule(DigitsNet(), ece_bins=0), ["ece_bins"]),
    "sampler world_size=0": (
        lambda: EpochSampler(torch.zeros(4, dtype=torch.long), False, world_size=0),
        ["world_size"],
    ),
    "metrics num_classes=0": (lambda: LongTailMetrics(0), ["num_classes"]),
    # wrong types
    "ldam max_m='big'": (lambda: LDAMLoss(max_m="big"), ["max_m"]),
    "ghm bins=2.5": (lambda: GHMCLoss(bins=2.5), ["bins"]),
    "imbalance_ratio='10'": (lambda: DigitsLTDataModule(imbalance_ratio="10"), ["imbalance_ratio"]),
    "seed='x'": (lambda: DigitsLTDataModule(seed="x"), ["seed"]),
    "drs start_epoch=2.5": (lambda: DeferredResampling(start_epoch=2.5), ["start_epoch"]),
    "drw beta='high'": (lambda: DeferredReweighting(beta="high"), ["beta"]),
    "loader float images": (
        lambda: DeviceDataLoader(torch.zeros(4, 1, 8, 8), torch.zeros(4), 2, (0.5,), (0.5,)),
        ["images must be a uint8"],
    ),
    # class counts that do not match the data; empty classes
    "empty class in class_counts": (lambda: LDAMLoss(class_counts=[10, 0, 5]), ["class_counts"]),
    "fractional class_counts": (lambda: LDAMLoss(class_counts=[10, 2.5]), ["class_counts"]),
    "a profile that empties classes": (
        lambda: long_tail_counts(10, 10, imbalance_ratio=50),
        ["imbalance_ratio"],
    ),
    "metrics class_counts for 2 of 10": (
        lambda: LongTailMetrics(10, class_counts=[1, 2]),
        ["class_counts"],
    ),
    "loss class_counts for 3 of 10 classes": (
        lambda: fit(
            LongTailModule(DigitsNet(), loss=LDAMLoss(class_counts=[5, 4, 3])),
            DigitsLTDataModule(),
        ),
        ["class_counts"],
    ),
    "backbone of 5 classes for 10": (
        lambda: fit(LongTailModule(DigitsNet(num_classes=5)), DigitsLTDataModule()),
        ["backbone.num_classes"],
    ),
    "datamodule class_counts for 5 of 10": (
        lambda: fit(LongTailModule(DigitsNet()), PlainData([5, 4, 3, 2, 1])),
        ["len(class_counts)"],
    ),
    "pool without class 9": (lambda: bad_data.EmptyClass().setup("fit"), ["class_counts[9]"]),
    # labels outside the class range, checked once at set-up
    "test label 10 of 10 classes": (
        lambda: bad_data.TestLabelsOutOfRange().setup("fit"),
        ["labels", "num_classes=10"],
    ),
    "training label -1": (
        lambda: bad_data.NegativeTrainingLabel().setup("fit"),
        ["labels", "num_classes=10"],
    ),
    # missing data; a loader without the sampler DRS needs
    "cifar dir missing, download=False": (
        lambda: CIFAR10LTDataModule(data_dir=MISSING, download=False).setup("fit"),
        ["download=True", MISSING],
    ),
    "fashion-mnist dir missing, download=False": (fashion_without_any_copy, ["download=True"]),
    "drs without a class-balanced sampler": (
        lambda: fit(
            LongTailModule(DigitsNet(), callbacks=[DeferredResampling(start_epoch=0)]),
            PlainData([2] * 10),
        ),
        ["class_balanced"],
    ),
    "interrupt checkpoint without a name": (
        lambda: InterruptCheckpoint(dirpath=".", filename=""),
        ["filename"],
    ),
}


@pytest.mark.parametrize("name", list(PYTHON_INPUTS))
def test_bad_python_input_raises_an_error_that_names_the_argument(name):
    make, words = PYTHON_INPUTS[name]
    with pytest.raises(USER_ERRORS) as error:
        make()
    message = str(error.value)
    assert all(word in message for word in words), message


# --- the command line --------------------------------------------------------------------------

BAD_COMMAND_LINES = {
    # arguments out of range
    "imbalance_ratio=0.5": (["--data.init_args.imbalance_ratio=0.5"], ["imbalance_ratio"]),
    "batch_size=0": (["--data.init_args.batch_size=0"], ["batch_size"]),
    "step_fraction=1.5": (
        ["--data.init_args.profile=step", "--data.init_args.step_fraction=1.5"],
        ["step_fraction"],
    ),
    "max_m=-1": (["--model.init_args.loss.init_args.max_m=-1"], ["max_m"]),
    "s=0": (["--model.init_args.loss.init_args.s=0"], ["s must be > 0"]),
    "ece_bins=0": (["--model.init_args.ece_bins=0"], ["ece_bins"]),
    "few_shot_threshold above many": (
        ["--model.init_args.few_shot_threshold=500"],
        ["few_shot_threshold"],
    ),
    "drw start_epoch=-3": (
        ["--model.init_args.callbacks.init_args.start_epoch=-3"],
        ["start_epoch"],
    ),
    "drw beta=1.5": (["--model.init_args.callbacks.init_args.beta=1.5"], ["beta"]),
    "drw weights=sqrt": (["--model.init_args.callbacks.init_args.weights=sqrt"], ["weights"]),
    "devices=0": (["--trainer.devices=0"], ["devices"]),
    # wrong types, unknown names
    "batch_size=many": (["--data.init_args.batch_size=many"], ["batch_size"]),
    "max_epochs=foo": (["--trainer.max_epochs=foo"], ["trainer.max_epochs"]),
    "precision=64-weird": (["--trainer.precision=64-weird"], ["trainer.precision"]),
    "profile=cubic": (["--data.init_args.profile=cubic"], ["profile"]),
    "seed_everything=abc": (["--seed_everything=abc"], ["seed_everything"]),
    "misspelt loss argument": (["--model.init_args.loss.init_args.maxm=0.3"], ["maxm"]),
    "unknown loss class_path": (
        ["--model.init_args.loss.class_path=ltlight.losses.Nope"],
        ["loss", "ltlight.losses.Nope"],
    ),
    "unknown data class_path": (["--data=ltlight.data.NoSuchData"], ["ltlight.data.NoSuchData"]),
    "missing config file": (["--config", "no/such/config.yaml"], ["no/such/config.yaml"]),
    "missing checkpoint": (["--ckpt_path=no/such.ckpt"], ["no/such.ckpt"]),
    # class counts that do not match the data; empty classes
    "loss class_counts for 3 of 10": (
        ["--model.init_args.loss.init_args.class_counts=[5,4,3]"],
        ["class_counts"],
    ),
    "loss class_counts with an empty class": (
        ["--model.init_args.loss.init_args.class_counts=[9,8,7,6,5,4,3,2,1,0]"],
        ["class_counts"],
    ),
    "backbone of 5 classes": (
        ["--model.init_args.backbone.init_args.num_classes=5"],
        ["backbone.num_classes"],
    ),
    "profile empties classes": (["--data.init_args.imbalance_ratio=200"], ["imbalance_ratio"]),
    "pool without class 9": (["--data=bad_data.EmptyClass"], ["class_counts[9]"]),
    # labels outside the class range
    "test label 10 of 10": (["--data=bad_data.TestLabelsOutOfRange"], ["labels", "num_classes"]),
    "training label -1": (["--data=bad_data.NegativeTrainingLabel"], ["labels", "num_classes"]),
    # a dataset directory that is missing
    "cifar dir missing, download=false": (
        [
            "--data=ltlight.data.CIFAR10LTDataModule",
            f"--data.init_args.data_dir={MISSING}",
            "--data.init_args.download=false",
        ],
        ["download=True", MISSING],
    ),
}


def files_of(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def base_arguments(folder):
    return [
        "fit",
        "--config",
        str(QUICK_START),
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={folder}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.init_args.save_dir={folder}",
    ]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One good short fit: its folder and the hash of every file it wrote."""
    folder = tmp_path_factory.mktemp("good_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        main(base_arguments(folder))
    files = files_of(folder)
    assert any(name.endswith("last.ckpt") for name in files), files
    assert any(name.endswith("config.yaml") for name in files), files
    return folder, files


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
def test_bad_command_line_names_the_argument_and_leaves_an_earlier_run_intact(
    name, good_run, monkeypatch, capsys
):
    extra, words = BAD_COMMAND_LINES[name]
    folder, files = good_run
    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit) as exit_info:
        main([*base_arguments(folder), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = " ".join(err.strip().splitlines()[-3:])
    assert all(word in last for word in words), err[-2000:]
    assert files_of(folder) == files  # nothing changed, nothing added


def test_the_sweep_tries_at_least_25_bad_inputs_of_each_kind():
    assert len(PYTHON_INPUTS) >= 25 and len(BAD_COMMAND_LINES) >= 25
