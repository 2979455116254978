"""ThresholdTuning: per-label thresholds equal a brute-force search over every candidate cut,
per-label temperatures equal a one-dimensional minimisation per label, and the callback stores
them in the module and its checkpoint (Lightning's real Trainer)."""

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from multilabel_data import FEATURES, C, MultiLabelTensorDataModule
from scipy.optimize import minimize_scalar
from torch import nn

from ltlight import LongTailModule
from ltlight.callbacks import ThresholdTuning
from ltlight.callbacks.posthoc.threshold_tuning import fit_label_temperature, tune_thresholds
from ltlight.label_decision import LabelDecision
from ltlight.losses import BinaryCrossEntropyLoss
from ltlight.metrics import multilabel_metrics


def scores(n: int = 120, labels: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, labels, generator=gen) < 0.3).float()
    probs = ((0.5 * target + torch.rand(n, labels, generator=gen)) / 1.5 * 25).round() / 25  # ties
    target[torch.rand(n, labels, generator=gen) < 0.1] = math.nan
    return probs.double(), target


def brute_force(probs, target, criterion):
    """For each label, every distinct known probability as a threshold (``p ≥ t``), highest first;
    the first that is best by ``criterion(tp, fp, fn)`` (a score, or None when not allowed), moved
    midway to the next lower distinct probability."""
    chosen = []
    for c in range(probs.shape[1]):
        pairs = [
            (p, y)
            for p, y in zip(probs[:, c].tolist(), target[:, c].tolist(), strict=True)
            if not math.isnan(y)
        ]
        if not any(y == 1 for _, y in pairs):
            chosen.append(0.5)
            continue
        best, best_score = None, -math.inf
        candidates = sorted({p for p, _ in pairs}, reverse=True)
        for t, lower in zip(candidates, [*candidates[1:], 0.0], strict=True):
            tp = sum(1 for p, y in pairs if p >= t and y == 1)
            fp = sum(1 for p, y in pairs if p >= t and y == 0)
            fn = sum(1 for p, y in pairs if p < t and y == 1)
            score = criterion(tp, fp, fn)
            if score is not None and score > best_score:
                best, best_score = (t + lower) / 2, score  # midway to the next lower value
        chosen.append(best)
    return torch.tensor(chosen, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_maximising_f1_equal_a_brute_force_search(seed):
    probs, target = scores(seed=seed)
    expected = brute_force(probs, target, lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn))
    torch.testing.assert_close(tune_thresholds(probs, target), expected)


def test_thresholds_for_a_target_precision_give_the_most_recall_that_reaches_it():
    probs, target = scores(seed=3)

    def most_recall_at_precision(tp, fp, fn):  # ties in recall: lower threshold is no better
        return tp / (tp + fn) - 1e-9 * (tp + fp) if tp / (tp + fp) >= 0.6 else None

    got = tune_thresholds(probs, target, target_precision=0.6)
    torch.testing.assert_close(got, brute_force(probs, target, most_recall_at_precision))


def test_thresholds_for_a_target_recall_give_the_most_precision_that_reaches_it():
    probs, target = scores(seed=4)
    # among the cuts reaching recall 0.8 the highest threshold; it is the most precise of them
    # only in expectation, so the brute force takes the same rule: the highest that reaches it
    expected = brute_force(probs, target, lambda tp, fp, fn: 0 if tp / (tp + fn) >= 0.8 else None)
    torch.testing.assert_close(tune_thresholds(probs, target, target_recall=0.8), expected)


def test_a_label_without_positives_keeps_one_half_and_thresholds_stay_inside_zero_one():
    probs, target = scores(seed=5)
    target[:, 2] = torch.where(target[:, 2].isnan(), target[:, 2], 0.0)
    probs[:, 3] = torch.where(target[:, 3] == 1, 1.0, 0.0)  # saturated: the cut is 1 vs 0
    probs[:, 4] = torch.where(target[:, 4] == 1, 1e-300, 0.0)  # a cut between 0 and 1e-300
    thresholds = tune_thresholds(probs, target)
    assert thresholds[2] == 0.5 and thresholds[3] == 0.5
    assert 0 < thresholds[4] < 1 and float(thresholds[4].float()) > 0


def test_per_label_temperature_equals_a_one_dimensional_fit_of_each_label():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(200, 3, generator=gen, dtype=torch.float64) * 3
    target = torch.rand(200, 3, generator=gen, dtype=torch.float64) < torch.sigmoid(logits / 2)
    target = target.double()
    target[:20, 1] = math.nan
    fitted = fit_label_temperature(logits, target)
    for c in range(3):
        known = ~target[:, c].isnan()
        z, y = logits[known, c], target[known, c]

        def bce(log_t, z=z, y=y):
            p = torch.sigmoid(z / math.exp(log_t))
            return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())

        best = minimize_scalar(bce, bounds=(-3, 3), method="bounded", options={"xatol": 1e-10})
        assert float(fitted[c]) == pytest.approx(math.exp(best.x), rel=1e-4)


def trainer(tmp_path, callbacks, **kwargs):
    return L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        **kwargs,
    )


def module():
    torch.manual_seed(0)
    return LongTailModule(
        nn.Linear(FEATURES, C),
        loss=BinaryCrossEntropyLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
    )


def test_the_callback_stores_the_tuned_thresholds_in_the_module_and_the_last_checkpoint(tmp_path):
    data = MultiLabelTensorDataModule(val_size=151)
    model = module()
    tuning = ThresholdTuning(fit_temperature=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    fit = trainer(tmp_path, [tuning, checkpoint])
    fit.fit(model, datamodule=data)
    features, target = data.val_set.tensors
    with torch.no_grad():
        logits = model(features).double()
    temperature = fit_label_temperature(logits, target)
    torch.testing.assert_close(
        model.label_decision.temperature.double(), temperature.float().double()
    )
    probs = torch.sigmoid(logits / model.label_decision.temperature.double())
    expected = tune_thresholds(probs, target).float()
    torch.testing.assert_close(model.label_decision.thresholds, expected, rtol=1e-5, atol=1e-6)
    after = multilabel_metrics(probs, target, thresholds=expected)
    assert tuning.metrics_after["macro_f1"] == pytest.approx(float(after["macro_f1"]), rel=1e-5)
    assert tuning.metrics_after["macro_f1"] >= tuning.metrics_before["macro_f1"]
    saved = torch.load(checkpoint.last_model_path, weights_only=True)["state_dict"]
    torch.testing.assert_close(saved["label_decision.thresholds"], model.label_decision.thresholds)
    # the module's F1 now uses the tuned thresholds
    results = fit.validate(model, datamodule=data, verbose=False)[0]
    assert results["val/macro_f1"] == pytest.approx(float(after["macro_f1"]), rel=1e-4)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ThresholdTuning(target_precision=1.5), r"target_precision must be in \(0, 1\]"),
        (lambda: ThresholdTuning(target_recall=0.0), r"target_recall must be in \(0, 1\], got 0.0"),
        (lambda: ThresholdTuning(0.5, 0.5), r"not both, got target_precision=0.5"),
        (lambda: LabelDecision().set_thresholds([0.5, 1.0]), r"thresholds must be in \(0, 1\) "),
        (lambda: LabelDecision().set_thresholds([0.0, 0.5]), r"\(label, value\) \[\(0, 0.0\)\]"),
        (lambda: LabelDecision().set_temperature([1.0, -2.0]), r"temperature must be in > 0"),
    ],
)
def test_thresholds_and_targets_outside_their_range_are_refused_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_threshold_tuning_on_single_label_data_says_it_needs_float_targets(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    class SingleLabel(L.LightningDataModule):
        def train_dataloader(self):
            data = TensorDataset(torch.randn(40, FEATURES), torch.randint(0, C, (40,)))
            return DataLoader(data, batch_size=20)

        val_dataloader = train_dataloader

    model = LongTailModule(nn.Linear(FEATURES, C), num_classes=C)
    with pytest.raises(ValueError, match=r"needs float \(N, C\) targets"):
        trainer(tmp_path, [ThresholdTuning()], max_steps=1).fit(model, datamodule=SingleLabel())


def test_softmax_temperature_scaling_on_multi_label_data_points_to_threshold_tuning(tmp_path):
    from ltlight.callbacks import TemperatureScaling

    with pytest.raises(
        ValueError, match=r"TemperatureScaling calibrates a softmax.*ThresholdTuning"
    ):
        trainer(tmp_path, [TemperatureScaling()], max_steps=2).fit(
            module(), datamodule=MultiLabelTensorDataModule()
        )
