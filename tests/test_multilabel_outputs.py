"""What a multi-label run writes: PredictionWriter's rows (labels above the tuned thresholds,
every label's probability) and PerClassReport's per-class AP figure and table."""

import csv

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from multilabel_data import CLASS_NAMES, FEATURES, C, MultiLabelTensorDataModule
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import PerClassReport, PredictionWriter, ThresholdTuning
from ltlight.losses import BinaryCrossEntropyLoss


def fitted(tmp_path, callbacks, **kwargs):
    torch.manual_seed(0)
    model = LongTailModule(
        nn.Linear(FEATURES, C),
        loss=BinaryCrossEntropyLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )
    data = MultiLabelTensorDataModule()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        **{"logger": False, **kwargs},
    )
    trainer.fit(model, datamodule=data)
    return trainer, model, data


def test_predictions_list_the_labels_above_the_tuned_thresholds_and_every_probability(tmp_path):
    writer = PredictionWriter(str(tmp_path / "predictions.csv"))
    trainer, model, data = fitted(tmp_path, [ThresholdTuning(), writer])
    trainer.predict(model, datamodule=data)
    with open(tmp_path / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    features, target = data.test_set.tensors
    with torch.no_grad():
        probs = torch.sigmoid(model(features))
    thresholds = model.label_decision.thresholds
    assert len(rows) == len(features) and thresholds.numel() == C
    assert list(rows[0]) == [
        "index", "labels", "label_names", "predicted", "predicted_names", "probabilities"
    ]  # fmt: skip
    for row in rows:
        i = int(row["index"])
        written = torch.tensor([float(p) for p in row["probabilities"].split()])
        torch.testing.assert_close(written, probs[i], atol=1e-6, rtol=0)
        above = [c for c in range(C) if probs[i, c] >= thresholds[c]]
        assert row["predicted"] == " ".join(map(str, above))
        assert row["predicted_names"] == "|".join(CLASS_NAMES[c] for c in above)
        positives = [c for c in range(C) if target[i, c] == 1]
        assert row["label_names"] == "|".join(CLASS_NAMES[c] for c in positives)


def test_the_report_draws_per_class_ap_head_to_tail_and_prints_map(tmp_path, capsys):
    logger = CSVLogger(tmp_path)
    _, _, data = fitted(tmp_path, [PerClassReport()], logger=logger)
    figures = sorted(p.name for p in (tmp_path / "lightning_logs").rglob("*.png"))
    assert figures == ["val_per_class_ap_epoch0.png", "val_per_class_ap_epoch1.png"]
    printed = capsys.readouterr().out
    assert "per-class AP" in printed and "mAP" in printed and "tail mAP" in printed
    # head → tail: the classes appear in the order of their training positives
    order = sorted(range(C), key=lambda c: -data.class_counts[c])
    positions = [printed.index(CLASS_NAMES[c]) for c in order]
    assert positions == sorted(positions)
    assert "balanced error" not in printed
