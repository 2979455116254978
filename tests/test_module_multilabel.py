"""LongTailModule on multi-label data (float (N, C) targets, NaN unknown), Lightning's real
Trainer: training with every sigmoid loss, DRW, metrics equal to scikit-learn's, sigmoid
probabilities, checkpoints."""

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from multilabel_data import FEATURES, C, MultiLabelTensorDataModule
from sklearn.metrics import average_precision_score
from torch import nn
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.callbacks import DeferredReweighting
from ltlight.losses import (
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    DistributionBalancedLoss,
    GHMCLoss,
    SigmoidFocalLoss,
)


def trainer(tmp_path, max_epochs=3, **kwargs):
    options = dict(max_epochs=max_epochs, devices=1, num_sanity_val_steps=0)
    return quiet_trainer(**options, default_root_dir=tmp_path, **kwargs)


def module(loss=None, **kwargs):
    torch.manual_seed(0)
    return LongTailModule(
        nn.Linear(FEATURES, C),
        loss=loss or BinaryCrossEntropyLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        **kwargs,
    )


def sklearn_map(model, dataset):
    with torch.no_grad():
        probs = torch.sigmoid(model(dataset.tensors[0])).numpy()
    target = dataset.tensors[1].numpy()
    ap = []
    for c in range(C):
        known = ~np.isnan(target[:, c])
        ap.append(average_precision_score(target[known, c], probs[known, c]))
    return float(np.mean(ap))


LOSSES = {
    "bce": BinaryCrossEntropyLoss,
    "asl": AsymmetricLoss,
    "db": DistributionBalancedLoss,
    "sigmoid_focal": SigmoidFocalLoss,
    "ghm": GHMCLoss,
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_sigmoid_loss_trains_on_unknown_targets_and_validation_map_equals_sklearn(
    tmp_path, name
):
    data = MultiLabelTensorDataModule()
    model = module(LOSSES[name]())
    fit = trainer(tmp_path)
    fit.fit(model, datamodule=data)
    logged = fit.callback_metrics
    assert torch.isfinite(logged["train/loss"]) and torch.isfinite(logged["val/loss"])
    expected = sklearn_map(model, data.val_set)
    assert float(logged["val/map"]) == pytest.approx(expected, rel=1e-5)
    assert float(logged["val/map"]) > 0.7  # it learnt the labels
    for key in ("head_map", "medium_map", "tail_map", "auroc", "macro_f1", "ece", "brier"):
        assert f"val/{key}" in logged, key
    assert "val/balanced_error" not in logged


def test_the_distribution_balanced_loss_gets_counts_and_images_from_the_datamodule(tmp_path):
    data = MultiLabelTensorDataModule()
    model = module(DistributionBalancedLoss())
    trainer(tmp_path, max_epochs=1).fit(model, datamodule=data)
    assert model.loss.class_counts.tolist() == data.class_counts
    assert model.loss.num_samples == 400


def test_drw_reweights_a_multi_label_loss_per_class_from_its_start_epoch(tmp_path):
    data = MultiLabelTensorDataModule()
    model = module(AsymmetricLoss(), callbacks=[DeferredReweighting(start_epoch=1)])
    weights = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:  # after DRW's epoch switch
                weight = pl_module.loss.weight
                weights.append(None if weight is None else weight.clone())

    trainer(tmp_path, max_epochs=2, callbacks=[Record()]).fit(model, datamodule=data)
    assert weights[0] is None
    counts = torch.tensor(data.class_counts, dtype=torch.float64)
    expected = (1 - 0.9999) / (1 - 0.9999**counts)
    expected = expected / expected.sum() * C
    torch.testing.assert_close(weights[1].double(), expected, rtol=1e-5, atol=1e-6)


def test_float_targets_switch_a_plain_datamodule_to_multi_label_with_sigmoid_probabilities(
    tmp_path,
):
    data = MultiLabelTensorDataModule(declare=False)
    model = module(num_classes=C)
    fit = trainer(tmp_path, max_epochs=2)
    fit.fit(model, datamodule=data)
    assert model.multi_label
    assert float(fit.callback_metrics["val/map"]) == pytest.approx(
        sklearn_map(model, data.val_set), rel=1e-5
    )
    probs = torch.cat(fit.predict(model, datamodule=data))
    with torch.no_grad():
        expected = torch.sigmoid(model(data.test_set.tensors[0]))
    torch.testing.assert_close(probs, expected)
    assert not torch.allclose(probs.sum(1), torch.ones(len(probs)))  # not a softmax


def test_checkpoint_keeps_multi_label_and_the_fitted_thresholds_and_temperatures(tmp_path):
    data = MultiLabelTensorDataModule()
    model = module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit = trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint])
    fit.fit(model, datamodule=data)
    model.label_decision.set_thresholds([0.2, 0.3, 0.4, 0.5, 0.6])
    model.label_decision.set_temperature([1.0, 2.0, 0.5, 1.5, 3.0])
    fit.save_checkpoint(tmp_path / "tuned.ckpt")
    loaded = LongTailModule.load_from_checkpoint(
        tmp_path / "tuned.ckpt", backbone=nn.Linear(FEATURES, C), loss=BinaryCrossEntropyLoss()
    )
    assert loaded.multi_label
    torch.testing.assert_close(loaded.label_decision.thresholds, model.label_decision.thresholds)
    logits = torch.randn(4, C)
    torch.testing.assert_close(
        loaded.predict_proba(logits), torch.sigmoid(logits / torch.tensor([1, 2, 0.5, 1.5, 3]))
    )
    # a checkpoint saved before any fit loads as unfitted: T = 1, t = 0.5
    untuned = LongTailModule.load_from_checkpoint(
        checkpoint.last_model_path, backbone=nn.Linear(FEATURES, C), loss=BinaryCrossEntropyLoss()
    )
    assert untuned.label_decision.thresholds.numel() == 0
    torch.testing.assert_close(untuned.predict_proba(logits), torch.sigmoid(logits))


def test_a_single_label_loss_on_multi_label_data_fails_in_one_line_naming_the_fix(tmp_path):
    data = MultiLabelTensorDataModule()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss is a single-label loss.*use a sigmoid"):
        trainer(tmp_path, max_epochs=1).fit(module(CrossEntropyLoss()), datamodule=data)
