"""``LongTailModule(compile=True)``: checkpoints as without it, a mid-epoch crash that resumes bit
for bit, a 2-process DDP run that takes the steps of DDP written out eagerly, and a backbone that
cannot compile running eagerly with one warning (Lightning's real Trainer, CPU, Inductor)."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import ddp_compile_worker as worker
import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from test_resume import Crash, CrashAt
from torch import nn

from ltlight import LongTailModule
from ltlight.data import DigitsLTDataModule

EPOCHS = 2


def make_trainer(root, callbacks=(), **options):
    return L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        default_root_dir=root, callbacks=list(callbacks), deterministic=True, **options,
    )  # fmt: skip


def trained(root, backbone, compile, callbacks=(), ckpt_path=None, **options):
    """A module trained on Digits-LT (random crops and flips, dropout-free backbones)."""
    L.seed_everything(0)
    module = LongTailModule(
        backbone(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        compile=compile,
    )
    data = DigitsLTDataModule(batch_size=32, augment=True, seed=1)
    fit = {} if ckpt_path is None else {"ckpt_path": ckpt_path}
    make_trainer(root, callbacks, **options).fit(module, datamodule=data, **fit)
    return module


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- a backbone that cannot compile ---------------------------------------------------------
@torch.library.custom_op("ltlight_test::halve", mutates_args=())
def halve(x: torch.Tensor) -> torch.Tensor:
    """A custom operator without a fake implementation: Dynamo cannot trace it."""
    return x * 0.5


halve.register_autograd(lambda ctx, grad: grad * 0.5)


class CustomOpNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        return self.fc(halve(torch.relu(self.conv(x))).flatten(1))


class PlainNet(CustomOpNet):
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1) * 0.5)


@pytest.fixture
def no_cxx_compiler(monkeypatch):
    """Inductor without a working C++ compiler (and no cached kernels to fall back on)."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor, "force_disable_caches", True)
    torch.compiler.reset()
    yield
    torch.compiler.reset()


@pytest.mark.parametrize(
    "case", ["custom operator without a fake implementation", "no C++ compiler"]
)
def test_a_backbone_that_cannot_compile_trains_eagerly_with_one_warning(tmp_path, request, case):
    backbone = CustomOpNet
    if case == "no C++ compiler":
        request.getfixturevalue("no_cxx_compiler")
        backbone = PlainNet
    eager = trained(tmp_path / "eager", backbone, compile=False, limit_train_batches=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = trained(tmp_path / "compiled", backbone, compile=True, limit_train_batches=4)
    ours = [w for w in caught if "cannot be compiled" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "CustomOpNet" in str(ours[0].message) or "PlainNet" in str(ours[0].message)
    assert "\n" not in str(ours[0].message)
    assert fallback.compiled_backbone.failed
    assert_same_state(fallback.state_dict(), eager.state_dict())


# -- compiled training ------------------------------------------------------------------------
@pytest.mark.slow  # compiles the training and the short last batch once: ~30 s on 2 cores
def test_a_compiled_run_resumes_bit_exact_from_a_mid_epoch_crash_with_plain_checkpoints(tmp_path):
    uninterrupted = trained(tmp_path / "a", PlainNet, True, [ModelCheckpoint(save_top_k=0)])
    assert uninterrupted.compiled_backbone.compiled is not None
    assert not uninterrupted.compiled_backbone.failed
    steps = uninterrupted.trainer.global_step
    crash = OnExceptionCheckpoint(dirpath=tmp_path, filename="crash")
    with pytest.raises(Crash):
        trained(tmp_path / "b", PlainNet, True, [crash, CrashAt(step=steps // 2 + 1)])
    resumed = trained(tmp_path / "c", PlainNet, True, ckpt_path=tmp_path / "crash.ckpt")
    assert_same_state(resumed.state_dict(), uninterrupted.state_dict())
    # the checkpoint holds the backbone's own names and loads into an uncompiled module
    saved = torch.load(tmp_path / "crash.ckpt", weights_only=True)["state_dict"]
    eager = LongTailModule(PlainNet())
    assert saved.keys() == eager.state_dict().keys()
    eager.load_state_dict(saved)


@pytest.mark.slow  # two processes start and compile: ~40 s on 2 cores
def test_two_compiled_ddp_processes_take_the_steps_of_ddp_written_out_eagerly(tmp_path):
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("LOCAL_RANK", None)
    done = subprocess.run(
        [sys.executable, str(Path(worker.__file__)), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(rank["ran_compiled"] for rank in ranks)
    assert_same_state(ranks[0]["state"], ranks[1]["state"])  # DDP kept the ranks in step
    # DDP written out in one eager process: each step, the two ranks' batches (each rank's own
    # shard of one order), the mean of their two mean losses, one SGD step
    reference = worker.make_backbone()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    datamodule = worker.make_datamodule(worker.BATCH_PER_RANK)
    datamodule.setup("fit")
    shards = [
        datamodule.make_loader("train", worker.BATCH_PER_RANK, torch.device("cpu"), r, 2)
        for r in (0, 1)
    ]
    steps = 0
    for epoch in range(worker.EPOCHS):
        for shard in shards:
            shard.sampler.set_epoch(epoch)
        for (x0, y0), (x1, y1) in zip(*shards, strict=True):
            optimizer.zero_grad()
            loss = (F.cross_entropy(reference(x0), y0) + F.cross_entropy(reference(x1), y1)) / 2
            loss.backward()
            optimizer.step()
            steps += 1
    assert steps == ranks[0]["steps"]
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-5)
