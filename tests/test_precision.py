"""Mixed precision with Lightning's Trainer: ``bf16-mixed`` on the CPU trains every loss with
finite losses and gradients; ``16-mixed`` is GPU-only, and on the CPU Lightning says so and runs
bf16 instead.

(``test_losses_precision.py`` checks the loss values under autocast against float32; here the
whole step runs as a user runs it: autocast forward, loss, backward, optimiser, validation.)
"""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import DeferredReweighting
from ltlight.data import DigitsLTDataModule
from ltlight.losses import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    LDAMHingeLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SigmoidFocalLoss,
    TaiLrLoss,
)
from ltlight.models import DigitsNet

README = Path(__file__).resolve().parents[1] / "README.md"
STEPS = 2

# name: (loss, cosine head, method callbacks)
METHODS = {
    "cross_entropy": (CrossEntropyLoss, False, []),
    "ldam_s30": (lambda: LDAMLoss(s=30.0), True, []),
    "ldam_s30_drw": (lambda: LDAMLoss(s=30.0), True, [DeferredReweighting(start_epoch=0)]),
    "ldam_hinge": (LDAMHingeLoss, True, []),
    "focal": (lambda: FocalLoss(gamma=2.0), False, []),
    "sigmoid_focal": (SigmoidFocalLoss, False, []),
    "ghmc_momentum": (lambda: GHMCLoss(bins=10, momentum=0.75), False, []),
    "tailr_0.999": (lambda: TaiLrLoss(gamma=0.999), False, []),
    "tailr_1": (lambda: TaiLrLoss(gamma=1.0), False, []),
    "tailr_1_threshold": (lambda: TaiLrLoss(gamma=1.0, threshold=0.1), False, []),
    "logit_adjusted": (LogitAdjustedLoss, False, []),
    "balanced_softmax": (BalancedSoftmaxLoss, False, []),
}


class CheckFinite(L.Callback):
    """Records each step's loss, whether every gradient is finite, and the first layer's dtype."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.finite_gradients: list[bool] = []
        self.first_layer_dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        def record(module, inputs, output):
            self.first_layer_dtypes.add(output.dtype)

        first = next(m for m in pl_module.backbone.modules() if isinstance(m, nn.Conv2d))
        first.register_forward_hook(record)

    def on_after_backward(self, trainer, pl_module) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        assert grads, "no gradient reached the parameters"
        self.finite_gradients.append(all(bool(torch.isfinite(g).all()) for g in grads))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


# The hard cases run by default; the rest with `pytest -m slow` (each is a real fit).
HARD = {"ldam_s30", "ldam_s30_drw", "ghmc_momentum", "tailr_0.999", "tailr_1"}


@pytest.mark.parametrize(
    "name", [n if n in HARD else pytest.param(n, marks=pytest.mark.slow) for n in METHODS]
)
def test_bf16_mixed_on_the_cpu_gives_finite_losses_and_gradients(name, tmp_path):
    make_loss, normed, callbacks = METHODS[name]
    L.seed_everything(0)
    module = LongTailModule(
        DigitsNet(normed=normed),
        loss=make_loss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        callbacks=callbacks,
    )
    check = CheckFinite()
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_epochs=1,
        limit_train_batches=STEPS,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[check],
    )
    trainer.fit(module, datamodule=DigitsLTDataModule(batch_size=32, eval_batch_size=50))

    assert trainer.precision == "bf16-mixed"
    # autocast really ran the convolutions in bf16 (the cosine head keeps float32 on purpose)
    assert check.first_layer_dtypes == {torch.bfloat16}
    assert len(check.losses) == STEPS and all(math.isfinite(v) for v in check.losses)
    assert check.finite_gradients == [True] * STEPS
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())
    for buffer in module.loss.buffers():  # GHM-C's EMA of bin counts, LDAM's margins, ...
        assert bool(torch.isfinite(buffer).all())
    for metric in ("val/loss", "val/error", "val/ece"):
        assert math.isfinite(float(trainer.callback_metrics[metric])), metric


def test_16_mixed_is_documented_as_gpu_only():
    readme = README.read_text()
    assert "--trainer.precision=bf16-mixed" in readme
    assert "`16-mixed` (GPU; on the CPU Lightning warns and" in " ".join(readme.split())


def test_16_mixed_on_the_cpu_warns_and_runs_bf16_instead():
    with pytest.warns(UserWarning, match="AMP with fp16 is not supported on CPU"):
        trainer = L.Trainer(accelerator="cpu", precision="16-mixed", logger=False)
    assert trainer.precision == "bf16-mixed"
