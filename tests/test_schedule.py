"""One schedule per config: fractions of trainer.max_epochs; switches outside the run refused."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting, TaiLrGammaSchedule
from ltlight.cli import LongTailCLI
from ltlight.data import DigitsLTDataModule
from ltlight.losses import TaiLrLoss
from ltlight.models import DigitsNet
from ltlight.optim import WarmupCosineLR, WarmupMultiStepLR

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class Seen(L.Callback):
    """Per epoch: whether the loss is weighted, the sampler's mode, the learning rate."""

    def __init__(self) -> None:
        self.epochs: list[tuple[bool, bool, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sampler = trainer.train_dataloader.sampler
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.epochs.append((pl_module.loss.weight is not None, sampler.class_balanced, lr))


@pytest.mark.parametrize("method", ["ldam_drw", "ldam_drs"])
def test_max_epochs_on_the_command_line_moves_the_whole_schedule_of_a_config(method, tmp_path):
    cli = LongTailCLI(
        args=[
            "--config",
            str(CONFIGS / "digits_lt" / f"{method}.yaml"),
            "--trainer.max_epochs=10",  # the config says 40; its switches are at 0.8 and 0.9
            "--trainer.logger=false",
            "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    seen = Seen()
    cli.trainer.callbacks.append(seen)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    switched = [weighted or balanced for weighted, balanced, _ in seen.epochs]
    assert switched == [False] * 8 + [True] * 2  # from epoch floor(0.8 · 10) = 8
    base = 0.1  # paper_sgd; warm-up 2 epochs, ×0.01 at epochs 8 and 9
    expected = [base / 2, base] + [base] * 6 + [base * 0.01, base * 1e-4]
    assert [lr for _, _, lr in seen.epochs] == pytest.approx(expected, rel=1e-9)


def test_every_config_gives_its_schedule_as_fractions_of_the_run():
    for path in sorted(CONFIGS.rglob("*.yaml")):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("start_epoch", "end_epoch") and value.strip() != "0":
                assert "." in value, f"{path}: {line.strip()} is an epoch, not a fraction"
            if key.strip() == "milestones":
                assert all("." in v for v in value.strip(" []").split(",")), f"{path}: {line}"
            assert key.strip() != "T_max", f"{path}: the cosine's length repeats max_epochs"


def fit_for(max_epochs: int, callbacks: list, lr_scheduler=None, loss=None) -> None:
    module = LongTailModule(DigitsNet(), loss=loss, callbacks=callbacks, lr_scheduler=lr_scheduler)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=DigitsLTDataModule(batch_size=32))


@pytest.mark.parametrize(
    ("callbacks", "lr_scheduler", "loss", "named"),
    [
        ([DeferredReweighting(start_epoch=160)], None, None, "DeferredReweighting start_epoch=160"),
        ([DeferredResampling(start_epoch=100)], None, None, "DeferredResampling start_epoch=100"),
        (
            [TaiLrGammaSchedule(start_epoch=0, end_epoch=180)],
            None,
            TaiLrLoss(),
            "TaiLrGammaSchedule end_epoch=180",
        ),
        (
            [],
            lambda optimizer: WarmupMultiStepLR(optimizer, milestones=[160, 180]),
            None,
            "WarmupMultiStepLR milestones=160",
        ),
    ],
)
def test_a_switch_at_or_after_the_end_of_training_stops_naming_both_numbers(
    callbacks, lr_scheduler, loss, named
):
    with pytest.raises(ValueError, match="at or after the end of training") as info:
        fit_for(100, callbacks, lr_scheduler, loss)
    assert named in str(info.value) and "max_epochs=100" in str(info.value)


def test_a_fraction_resolving_to_the_end_of_training_is_refused_too():
    with pytest.raises(ValueError, match=r"start_epoch=1.0 of max_epochs=3 = epoch 3"):
        fit_for(3, [DeferredReweighting(start_epoch=1.0)])


def test_a_fraction_without_max_epochs_is_refused():
    module = LongTailModule(DigitsNet(), callbacks=[DeferredReweighting(start_epoch=0.5)])
    trainer = L.Trainer(max_epochs=-1, max_steps=2, logger=False, enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"start_epoch=0.5 is a fraction of the run"):
        trainer.fit(module, datamodule=DigitsLTDataModule(batch_size=32))


def test_gamma_schedule_in_fractions_equals_the_same_schedule_in_epochs():
    by_fraction = TaiLrGammaSchedule(0.0, 0.6, start_epoch=0.25, end_epoch=0.75)
    by_epoch = TaiLrGammaSchedule(0.0, 0.6, start_epoch=5, end_epoch=15)
    for epoch in range(20):
        assert by_fraction.gamma_at(epoch, max_epochs=20) == by_epoch.gamma_at(epoch)


@pytest.mark.parametrize("value", [1.5, -0.1, "0.8", True])
def test_epoch_arguments_outside_epochs_and_fractions_are_refused(value):
    with pytest.raises(ValueError, match="start_epoch"):
        DeferredReweighting(start_epoch=value)
    with pytest.raises(ValueError, match="milestones"):
        WarmupMultiStepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 0.1), 1, [value])


def test_cosine_schedule_takes_its_length_from_the_run_and_equals_torchs_cosine():
    params = [torch.nn.Parameter(torch.zeros(1))]
    ours_optimizer, torch_optimizer = torch.optim.SGD(params, 0.2), torch.optim.SGD(params, 0.2)
    ours = WarmupCosineLR(ours_optimizer, min_lr_ratio=0.1)
    ours.set_max_epochs(30)  # what LongTailModule does with trainer.max_epochs
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(torch_optimizer, T_max=30, eta_min=0.02)
    for _ in range(30):
        assert ours.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12)
        ours_optimizer.step()
        torch_optimizer.step()
        ours.step()
        reference.step()


def test_cosine_warmup_rises_linearly_then_decays_over_the_rest_of_the_run():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], 1.0)
    scheduler = WarmupCosineLR(optimizer, warmup_epochs=0.2)
    scheduler.set_max_epochs(10)
    expected = [0.5, 1.0] + [(1 + math.cos(math.pi * k / 8)) / 2 for k in range(8)]
    assert [scheduler.factor(epoch) for epoch in range(10)] == pytest.approx(expected)
