"""Exact resume over image files: a run interrupted mid-epoch, with decoding worker processes
(Pillow) or threads (DALI), class-balanced re-sampling and colour jitter, resumes to
bit-identical weights (Lightning's real Trainer, CPU)."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting
from ltlight.data import ImageFolderLTDataModule

EPOCHS = 2


def make_module():
    L.seed_everything(0)
    backbone = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Dropout(0.2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(32, 10),
    )  # fmt: skip
    return LongTailModule(
        backbone,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        callbacks=[DeferredResampling(start_epoch=1), DeferredReweighting(start_epoch=1)],
    )


def make_data(folder, decoder):
    return ImageFolderLTDataModule(
        train=f"{folder}/train", val_per_class=1, batch_size=8, num_workers=2,
        image_size=16, resize=20, seed=3, decoder=decoder,
    )  # fmt: skip


def make_trainer(tmp_path, callbacks=()):
    return L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=tmp_path,
        callbacks=list(callbacks), deterministic=True,
    )  # fmt: skip


class Crash(Exception):
    pass


class CrashAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash(f"crash at step {self.step}")


@pytest.mark.slow  # three fits with worker processes: ~1 min on 2 cores (DALI: ~20 s)
@pytest.mark.parametrize("decoder", ["pil", "dali"])
def test_a_mid_epoch_crash_with_workers_resumes_bit_exact(image_folder_dir, tmp_path, decoder):
    if decoder == "dali":
        pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra")
    uninterrupted = make_module()
    make_trainer(tmp_path / "a", [ModelCheckpoint(save_top_k=0)]).fit(
        uninterrupted, datamodule=make_data(image_folder_dir, decoder)
    )
    # 32 training images, batch 8: 4 steps per epoch; step 6 is batch 2 of the class-balanced
    # epoch 1, with the decoding workers' prefetched batches in flight.
    on_crash = OnExceptionCheckpoint(dirpath=tmp_path, filename="crash")
    with pytest.raises(Crash):
        make_trainer(tmp_path / "b", [on_crash, CrashAt(step=6)]).fit(
            make_module(), datamodule=make_data(image_folder_dir, decoder)
        )
    saved = torch.load(tmp_path / "crash.ckpt", weights_only=True)
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches_yielded": 2, "class_balanced": True}
    ]
    resumed = make_module()
    make_trainer(tmp_path / "c").fit(
        resumed, datamodule=make_data(image_folder_dir, decoder), ckpt_path=tmp_path / "crash.ckpt"
    )
    expected, got = uninterrupted.state_dict(), resumed.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
