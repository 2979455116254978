"""Multi-label metrics against scikit-learn and plain float64 loops, NaN targets left out."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from ltlight.metrics import MULTILABEL_SCALAR_KEYS, MultiLabelMetrics, multilabel_metrics

C = 6
COUNTS = [500, 150, 101, 100, 20, 19]  # head, head, head, medium, medium, tail


def random_split(n: int = 150, seed: int = 0, unknown: float = 0.1):
    """Probabilities with ties (rounded), 0/1 targets, a fraction unknown (NaN)."""
    gen = torch.Generator().manual_seed(seed)
    rates = torch.tensor([0.5, 0.3, 0.2, 0.1, 0.05, 0.03])
    target = (torch.rand(n, C, generator=gen) < rates).float()
    target[0] = 1.0  # every class has a positive
    probs = (0.6 * target + 0.6 * torch.rand(n, C, generator=gen)).clamp(0, 1)
    probs = (probs * 20).round() / 20  # ties, as in real scores
    target[torch.rand(n, C, generator=gen) < unknown] = math.nan
    return probs, target


def known_columns(probs, target):
    for c in range(C):
        known = ~np.isnan(target[:, c].numpy())
        yield c, target[known, c].numpy(), probs[known, c].numpy()


def test_per_class_ap_and_map_equal_scikit_learn_average_precision_score():
    probs, target = random_split()
    results = multilabel_metrics(probs, target)
    expected = [average_precision_score(y, p) for _, y, p in known_columns(probs, target)]
    np.testing.assert_allclose(results["per_class_ap"].numpy(), expected, rtol=1e-6)
    assert float(results["map"]) == pytest.approx(np.mean(expected), rel=1e-6)
    auroc = [roc_auc_score(y, p) for _, y, p in known_columns(probs, target)]
    np.testing.assert_allclose(results["per_class_auroc"].numpy(), auroc, rtol=1e-6)


def test_head_medium_tail_map_are_means_over_training_positives_above_100_between_below_20():
    probs, target = random_split(seed=1)
    results = multilabel_metrics(probs, target, class_counts=COUNTS)
    ap = [average_precision_score(y, p) for _, y, p in known_columns(probs, target)]
    assert float(results["head_map"]) == pytest.approx(np.mean(ap[:3]), rel=1e-6)
    assert float(results["medium_map"]) == pytest.approx(np.mean(ap[3:5]), rel=1e-6)
    assert float(results["tail_map"]) == pytest.approx(ap[5], rel=1e-6)
    assert math.isnan(float(multilabel_metrics(probs, target)["head_map"]))


def test_f1_at_per_class_thresholds_equals_scikit_learn_micro_and_macro():
    probs, target = random_split(seed=2)
    thresholds = torch.tensor([0.5, 0.4, 0.6, 0.3, 0.7, 0.55])
    results = multilabel_metrics(probs, target, thresholds=thresholds)
    per_class = []
    all_y, all_pred = [], []
    for c, y, p in known_columns(probs, target):
        predicted = (p >= float(thresholds[c])).astype(int)
        per_class.append(f1_score(y, predicted))
        all_y.append(y)
        all_pred.append(predicted)
    np.testing.assert_allclose(results["per_class_f1"].numpy(), per_class, rtol=1e-6)
    assert float(results["macro_f1"]) == pytest.approx(np.mean(per_class), rel=1e-6)
    micro = f1_score(np.concatenate(all_y), np.concatenate(all_pred))
    assert float(results["micro_f1"]) == pytest.approx(micro, rel=1e-6)


def test_label_wise_ece_and_brier_match_a_float64_loop_over_known_entries():
    probs, target = random_split(seed=3)
    n_bins = 10
    bins = [[0.0, 0.0, 0] for _ in range(n_bins)]
    squares = []
    for p, y in zip(probs.double().flatten().tolist(), target.flatten().tolist(), strict=True):
        if math.isnan(y):
            continue
        b = min(int(p * n_bins), n_bins - 1)
        bins[b][0] += p
        bins[b][1] += y
        bins[b][2] += 1
        squares.append((p - y) ** 2)
    total = sum(b[2] for b in bins)
    ece = sum(abs(b[0] - b[1]) / total for b in bins if b[2])
    results = multilabel_metrics(probs, target, n_bins=n_bins)
    assert float(results["ece"]) == pytest.approx(ece, rel=1e-9)
    assert float(results["brier"]) == pytest.approx(sum(squares) / len(squares), rel=1e-9)


def test_a_class_without_positives_in_the_split_has_nan_ap_and_is_left_out_of_map():
    probs, target = random_split(seed=4)
    target[:, 2] = torch.where(target[:, 2].isnan(), target[:, 2], 0.0)
    results = multilabel_metrics(probs, target)
    assert math.isnan(float(results["per_class_ap"][2]))
    ap = results["per_class_ap"]
    assert float(results["map"]) == pytest.approx(float(ap[~ap.isnan()].mean()))
    assert int(results["positives"][2]) == 0


def test_the_metric_accumulates_batches_to_the_functional_value_and_resets():
    probs, target = random_split(seed=5)
    metric = MultiLabelMetrics(C, class_counts=COUNTS)
    for start in range(0, len(probs), 37):  # uneven batches
        metric.update(probs[start : start + 37], target[start : start + 37])
    got = metric.compute()
    expected = multilabel_metrics(probs, target, class_counts=COUNTS)
    for key in (*MULTILABEL_SCALAR_KEYS, "per_class_ap"):
        torch.testing.assert_close(got[key], expected[key], equal_nan=True)
    metric.set_thresholds(torch.full((C,), 0.8))
    assert float(metric.compute()["micro_f1"]) != float(got["micro_f1"])
    metric.reset()
    assert metric.probs == [] and metric.target == []


def test_logits_instead_of_probabilities_and_bad_targets_are_refused():
    probs, target = random_split(seed=6)
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*not the logits"):
        multilabel_metrics(probs * 4 - 2, target)
    bad = target.clone()
    bad[1, 1] = 0.5
    with pytest.raises(ValueError, match=r"must be 1, 0 or NaN.*0.5"):
        multilabel_metrics(probs, bad)
    with pytest.raises(ValueError, match=r"float targets of the same shape"):
        MultiLabelMetrics(C).update(probs, torch.zeros(len(probs), dtype=torch.long))
