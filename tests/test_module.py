"""LongTailModule and the re-balancing callbacks, driven by Lightning's real Trainer."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ltlight import LongTailModule
from ltlight.callbacks import DeferredResampling, DeferredReweighting, TaiLrGammaSchedule
from ltlight.losses import (
    BalancedSoftmaxLoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    LDAMHingeLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    LongTailLoss,
    SigmoidFocalLoss,
    TaiLrLoss,
)
from ltlight.optim import WarmupMultiStepLR

COUNTS = [40, 20, 10, 5]
FEATURES = 6


class TensorLTDataModule(L.LightningDataModule):
    """A user's own datamodule: plain DataLoaders and a `class_counts` attribute, nothing else."""

    def __init__(self, counts=COUNTS, batch_size=16, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.class_counts = list(counts)
        self.num_classes = len(counts)
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        centres = torch.randn(len(counts), FEATURES, generator=generator) * 2
        self.train_set = TensorDataset(
            centres[labels] + torch.randn(len(labels), FEATURES, generator=generator), labels
        )
        val_labels = torch.arange(len(counts)).repeat(10)
        self.val_set = TensorDataset(
            centres[val_labels] + torch.randn(len(val_labels), FEATURES, generator=generator),
            val_labels,
        )
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=64)

    test_dataloader = val_dataloader


def trainer(tmp_path, max_epochs=2, callbacks=(), **kwargs):
    options = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        deterministic=True,
    )
    options.update(kwargs)
    return L.Trainer(callbacks=list(callbacks), **options)


def linear_module(loss=None, lr=0.05, **kwargs):
    torch.manual_seed(0)
    return LongTailModule(
        nn.Linear(FEATURES, len(COUNTS)),
        loss=loss,
        optimizer=lambda params: torch.optim.SGD(params, lr=lr),
        **kwargs,
    )


class RecordWeights(L.Callback):
    def __init__(self):
        self.by_epoch = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        weight = pl_module.loss.weight
        self.by_epoch[trainer.current_epoch] = None if weight is None else weight.clone()


class UserLoss(LongTailLoss):
    """A user's own loss: squared error on the softmax, nothing but per_sample."""

    def per_sample(self, logits, target):
        probs = logits.softmax(-1)
        return ((probs - F.one_hot(target, logits.shape[-1])) ** 2).sum(-1)


ALL_LOSSES = [
    CrossEntropyLoss,
    LDAMLoss,
    LDAMHingeLoss,
    FocalLoss,
    SigmoidFocalLoss,
    GHMCLoss,
    TaiLrLoss,
    LogitAdjustedLoss,
    BalancedSoftmaxLoss,
    UserLoss,
]


def test_datamodule_counts_reach_the_loss(tmp_path):
    module = linear_module(loss=LDAMLoss())
    trainer(tmp_path, max_epochs=1).fit(module, datamodule=TensorLTDataModule())
    assert module.loss.class_counts.tolist() == COUNTS
    assert module.class_counts == COUNTS


def test_loss_needing_counts_without_them_says_how_to_give_them(tmp_path):
    module = linear_module(loss=LogitAdjustedLoss())
    data = TensorLTDataModule()
    loaders = dict(train_dataloaders=data.train_dataloader(), val_dataloaders=data.val_dataloader())
    with pytest.raises(ValueError, match="class_counts"):
        trainer(tmp_path, max_epochs=1).fit(module, **loaders)


def test_loss_counts_of_other_length_are_reported_with_both_numbers(tmp_path):
    module = linear_module(loss=LDAMLoss(class_counts=[5, 4, 3]))
    with pytest.raises(ValueError, match=r"3 classes.*4 classes"):
        trainer(tmp_path, max_epochs=1).fit(module, datamodule=TensorLTDataModule())


@pytest.mark.parametrize("loss_class", ALL_LOSSES, ids=lambda c: c.__name__)
def test_drw_leaves_weights_off_before_start_epoch_and_sets_them_after(tmp_path, loss_class):
    record = RecordWeights()
    drw = DeferredReweighting(start_epoch=2, weights="inverse_frequency")
    module = linear_module(loss=loss_class())
    trainer(tmp_path, max_epochs=4, callbacks=[drw, record], limit_train_batches=1).fit(
        module, datamodule=TensorLTDataModule()
    )
    expected = torch.tensor([1 / n for n in COUNTS], dtype=torch.float64)
    expected = expected / expected.sum() * len(COUNTS)
    assert record.by_epoch[0] is None and record.by_epoch[1] is None
    for epoch in (2, 3):
        torch.testing.assert_close(record.by_epoch[epoch].double(), expected, rtol=1e-6, atol=0)


def test_drw_effective_number_weights_match_the_formula(tmp_path):
    record = RecordWeights()
    beta = 0.99
    drw = DeferredReweighting(start_epoch=0, weights="effective_number", beta=beta)
    trainer(tmp_path, max_epochs=1, callbacks=[drw, record], limit_train_batches=1).fit(
        linear_module(), datamodule=TensorLTDataModule()
    )
    expected = torch.tensor([(1 - beta) / (1 - beta**n) for n in COUNTS], dtype=torch.float64)
    expected = expected / expected.sum() * len(COUNTS)
    torch.testing.assert_close(record.by_epoch[0].double(), expected, rtol=1e-6, atol=0)


class RecordStep(L.Callback):
    """Parameters and batch right before and right after the optimiser step of one epoch."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            self.batch = [t.clone() for t in batch]
            self.before = [p.detach().clone() for p in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch:
            self.after = [p.detach().clone() for p in pl_module.parameters()]


def test_one_step_after_the_switch_is_algorithm_1(tmp_path):
    """θ ← θ − α (Σ_B w_y)^{-1} ∇ Σ_B w_y ℓ_i, with ℓ the CE written again here in float64."""
    lr = 0.3
    record = RecordStep(epoch=1)
    drw = DeferredReweighting(start_epoch=1, weights="inverse_frequency")
    module = linear_module(lr=lr)
    data = TensorLTDataModule(batch_size=75)  # the whole (unshuffled) set: every class present
    trainer(tmp_path, max_epochs=2, callbacks=[drw, record], limit_train_batches=1).fit(
        module, datamodule=data
    )
    images, target = (t.double() if t.is_floating_point() else t for t in record.batch)
    weight_matrix, bias = (p.double().requires_grad_() for p in record.before)
    w = torch.tensor([1 / n for n in COUNTS], dtype=torch.float64)
    w = (w / w.sum() * len(COUNTS))[target]
    logits = images @ weight_matrix.T + bias
    per_sample = -(logits.gather(1, target[:, None])[:, 0] - logits.exp().sum(1).log())
    (w * per_sample).sum().backward()
    for before, grad, after in zip(
        record.before, (weight_matrix.grad, bias.grad), record.after, strict=True
    ):
        expected = before.double() - lr / w.sum() * grad
        torch.testing.assert_close(after.double(), expected, rtol=1e-5, atol=1e-6)


def test_subclass_compute_loss_is_used(tmp_path):
    calls = []

    class Recorded(LongTailModule):
        def compute_loss(self, logits, target):
            calls.append(logits.shape)
            return super().compute_loss(logits, target) * 0.0

    torch.manual_seed(0)
    module = Recorded(nn.Linear(FEATURES, len(COUNTS)), optimizer=lambda p: torch.optim.SGD(p, 0.1))
    before = [p.detach().clone() for p in module.parameters()]
    trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(
        module, datamodule=TensorLTDataModule()
    )
    assert len(calls) == math.ceil(sum(COUNTS) / 16)
    for b, p in zip(before, module.parameters(), strict=True):
        torch.testing.assert_close(b, p.detach())  # zero loss: no update


def test_validation_logs_balanced_error_and_ece(tmp_path):
    module = linear_module()
    results = trainer(tmp_path).validate(module, datamodule=TensorLTDataModule(), verbose=False)
    for key in ("val/error", "val/balanced_error", "val/ece", "val/few_shot_error"):
        assert key in results[0]
    assert 0.0 <= results[0]["val/balanced_error"] <= 1.0


def test_metrics_use_the_loss_predictive_logits(tmp_path):
    """LDAM trains s·z: its metrics see softmax(s·z), not softmax(z)."""
    module = linear_module(loss=LDAMLoss(s=30.0))
    data = TensorLTDataModule()
    trainer(tmp_path).validate(module, datamodule=data, verbose=False)
    logits = module(torch.randn(3, FEATURES))
    torch.testing.assert_close(module.predict_proba(logits), torch.softmax(30.0 * logits, -1))


def test_gamma_schedule_sets_the_loss_gamma_each_epoch(tmp_path):
    seen = {}

    class RecordGamma(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen[trainer.current_epoch] = pl_module.loss.gamma

    schedule = TaiLrGammaSchedule(start_gamma=0.0, end_gamma=0.8, start_epoch=1, end_epoch=3)
    trainer(tmp_path, max_epochs=5, callbacks=[schedule, RecordGamma()], limit_train_batches=1).fit(
        linear_module(loss=TaiLrLoss()), datamodule=TensorLTDataModule()
    )
    assert seen == pytest.approx({0: 0.0, 1: 0.0, 2: 0.4, 3: 0.8, 4: 0.8})


def test_gamma_schedule_cosine_shape():
    schedule = TaiLrGammaSchedule(0.2, 1.0, start_epoch=10, end_epoch=20, mode="cosine")
    for epoch in range(0, 25):
        p = min(max((epoch - 10) / 10, 0.0), 1.0)
        assert schedule.gamma_at(epoch) == pytest.approx(
            0.2 + 0.8 * (1 - math.cos(math.pi * p)) / 2
        )


def test_paper_lr_schedule_matches_the_official_adjust_learning_rate():
    def official(epoch, lr=0.1):  # LDAM-DRW cifar_train.py, epoch counted from 0
        epoch = epoch + 1
        if epoch <= 5:
            return lr * epoch / 5
        if epoch > 180:
            return lr * 0.0001
        if epoch > 160:
            return lr * 0.01
        return lr

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = WarmupMultiStepLR(optimizer)  # milestones 0.8 and 0.9 of the run
    scheduler.set_max_epochs(200)  # what LongTailModule does with trainer.max_epochs
    for epoch in range(200):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(official(epoch), rel=1e-12)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: DeferredReweighting(start_epoch=-1), "start_epoch must be >= 0, got -1"),
        (lambda: DeferredReweighting(weights="sqrt"), "weights must be one of"),
        (lambda: DeferredReweighting(beta=1.0), r"beta must be in \(0, 1\), got 1.0"),
        (lambda: DeferredResampling(start_epoch=-5), "start_epoch must be >= 0, got -5"),
        (lambda: TaiLrGammaSchedule(end_gamma=1.5), r"end_gamma must be in \[0, 1\], got 1.5"),
        (lambda: TaiLrGammaSchedule(start_gamma=-0.1), "start_gamma must be in"),
        (lambda: TaiLrGammaSchedule(start_epoch=5, end_epoch=2), "end_epoch must be >= start"),
        (lambda: TaiLrGammaSchedule(mode="step"), "mode must be one of"),
        (
            lambda: WarmupMultiStepLR(
                torch.optim.SGD([nn.Parameter(torch.zeros(1))], 0.1), milestones=[180, 160]
            ),
            "milestones must be increasing",
        ),
        (
            lambda: LongTailModule(nn.Linear(2, 2), num_classes=1),
            "num_classes must be an integer >= 2",
        ),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_drw_with_a_loss_without_weight_says_so(tmp_path):
    class NoWeight(nn.Module):
        def forward(self, logits, target):
            return F.cross_entropy(logits, target)

    module = linear_module(loss=NoWeight())
    with pytest.raises(TypeError, match="no `weight` attribute"):
        trainer(tmp_path, callbacks=[DeferredReweighting(0)]).fit(
            module, datamodule=TensorLTDataModule()
        )


def test_drs_with_a_plain_dataloader_says_what_it_needs(tmp_path):
    with pytest.raises(TypeError, match="class_balanced"):
        trainer(tmp_path, callbacks=[DeferredResampling(0)]).fit(
            linear_module(), datamodule=TensorLTDataModule()
        )


def test_checkpoint_loads_with_weights_only_and_the_backbone_given_again(tmp_path):
    module = linear_module(loss=LDAMLoss())
    run = trainer(tmp_path, max_epochs=1, enable_checkpointing=True)
    run.fit(module, datamodule=TensorLTDataModule())
    path = run.checkpoint_callback.best_model_path
    torch.load(path, weights_only=True)  # no pickled modules, no numpy arrays
    restored = LongTailModule.load_from_checkpoint(
        path, backbone=nn.Linear(FEATURES, len(COUNTS)), loss=LDAMLoss()
    )
    for a, b in zip(module.parameters(), restored.parameters(), strict=True):
        torch.testing.assert_close(a, b)
