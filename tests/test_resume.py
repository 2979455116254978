"""Exact resume: an interrupted run, resumed from its checkpoint, ends with the same weights.

Bit-exact on the CPU, across the DRW switch, with GHM-C's EMA state, TaiLr's γ schedule, class-
balanced re-sampling and seeded augmentation — all with Lightning's real Trainer.
"""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting, TaiLrGammaSchedule
from ltlight.data import DigitsLTDataModule
from ltlight.losses import GHMCLoss, LDAMLoss, TaiLrLoss
from ltlight.models import DigitsNet
from ltlight.optim import WarmupMultiStepLR

EPOCHS = 4


def method(name):
    """(loss, callbacks) of a method whose state changes at epoch 2."""
    if name == "ldam_drw":
        return LDAMLoss(), [DeferredReweighting(start_epoch=2)]
    if name == "ghm_drs":
        return GHMCLoss(momentum=0.75), [DeferredResampling(start_epoch=2)]
    return TaiLrLoss(), [TaiLrGammaSchedule(0.0, 0.9, start_epoch=1, end_epoch=3)]


def make_module(name):
    L.seed_everything(0)
    loss, callbacks = method(name)
    return LongTailModule(
        DigitsNet(normed=name == "ldam_drw"),
        loss=loss,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        lr_scheduler=lambda opt: WarmupMultiStepLR(opt, warmup_epochs=1, milestones=[3]),
        callbacks=callbacks,
    )


def make_trainer(tmp_path, callbacks=(), max_steps=-1):
    # A shorter first run stops by max_steps: the schedule's switches must lie inside max_epochs.
    return L.Trainer(
        max_epochs=EPOCHS,
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        deterministic=True,
    )


def data():
    return DigitsLTDataModule(batch_size=32, augment=True, seed=3)


def final_state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Uninterrupted(dict):
    """Each method trained EPOCHS epochs in one go, computed on first use, then shared."""

    def __init__(self, tmp_path_factory):
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, name):
        module = make_module(name)
        make_trainer(self.tmp_path_factory.mktemp(name), [ModelCheckpoint(save_top_k=0)]).fit(
            module, datamodule=data()
        )
        self[name] = final_state(module)
        return self[name]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return Uninterrupted(tmp_path_factory)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name",
    ["ldam_drw", pytest.param("ghm_drs", marks=SLOW), pytest.param("tailr_schedule", marks=SLOW)],
)
def test_resume_from_an_epoch_checkpoint_before_the_switch_is_bit_exact(
    tmp_path, uninterrupted, name
):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    make_trainer(tmp_path, [checkpoint], max_steps=32).fit(make_module(name), datamodule=data())
    resumed = make_module(name)
    path = tmp_path / "ckpt" / "epoch=1-step=32.ckpt"
    assert path.exists(), sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    make_trainer(tmp_path).fit(resumed, datamodule=data(), ckpt_path=path)
    assert_same_state(final_state(resumed), uninterrupted[name])


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash(f"crash at step {self.step}")


@pytest.mark.parametrize("name", [pytest.param("ldam_drw", marks=SLOW), "ghm_drs"])
def test_resume_from_a_mid_epoch_crash_is_bit_exact(tmp_path, uninterrupted, name):
    on_crash = OnExceptionCheckpoint(dirpath=tmp_path, filename="crash")
    with pytest.raises(Crash):
        make_trainer(tmp_path, [on_crash, CrashAt(step=21)]).fit(
            make_module(name), datamodule=data()
        )
    resumed = make_module(name)
    make_trainer(tmp_path).fit(resumed, datamodule=data(), ckpt_path=tmp_path / "crash.ckpt")
    assert_same_state(final_state(resumed), uninterrupted[name])


@SLOW
def test_resume_from_a_mid_epoch_step_checkpoint_is_bit_exact(tmp_path, uninterrupted):
    """A checkpoint saved in on_train_batch_end: the batch it was saved after is not repeated."""
    every_21 = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=21, save_top_k=-1)
    make_trainer(tmp_path, [every_21], max_steps=32).fit(make_module("ldam_drw"), datamodule=data())
    resumed = make_module("ldam_drw")
    path = tmp_path / "epoch=1-step=21.ckpt"
    assert path.exists(), sorted(p.name for p in tmp_path.iterdir())
    make_trainer(tmp_path).fit(resumed, datamodule=data(), ckpt_path=path)
    assert_same_state(final_state(resumed), uninterrupted["ldam_drw"])
