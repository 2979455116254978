"""Long-tail metrics against hand computations: per-class, balanced, many/medium/few-shot, ECE."""

import math

import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError
from torchmetrics.utilities.data import dim_zero_sum

from ltlight.metrics import (
    SCALAR_KEYS,
    SHOT_GROUPS,
    LongTailMetrics,
    long_tail_metrics,
    shot_groups,
)

NUM_CLASSES = 4
# Training counts: class 0 many (> 100), 1 and 2 medium (20 ≤ n ≤ 100, both ends inclusive),
# 3 few (< 20).
TRAIN_COUNTS = [500, 100, 20, 19]


def row(prediction: int, confidence: float) -> list[float]:
    rest = (1 - confidence) / (NUM_CLASSES - 1)
    return [confidence if j == prediction else rest for j in range(NUM_CLASSES)]


# (target, prediction, confidence). Per class: 0 → 1 of 4 wrong, 1 → 1 of 2, 2 → 0 of 3, 3 → 1 of 1.
FIXED = [
    (0, 0, 0.90),
    (0, 0, 0.80),
    (0, 0, 0.97),
    (0, 1, 0.60),
    (1, 1, 0.55),
    (1, 2, 0.70),
    (2, 2, 0.99),
    (2, 2, 0.45),
    (2, 2, 0.35),
    (3, 0, 0.85),
]


def fixed_predictions() -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.tensor([row(p, c) for _, p, c in FIXED])
    target = torch.tensor([t for t, _, _ in FIXED])
    return probs, target


def random_predictions(n: int, num_classes: int, seed: int, scale: float = 3.0):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, num_classes, generator=generator)
    target = torch.randint(0, num_classes, (n,), generator=generator)
    return logits.softmax(dim=1), target


def ece_float64(probs: torch.Tensor, target: torch.Tensor, n_bins: int) -> float:
    """Guo et al. (2017): Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|, bins [b/n, (b+1)/n), last closed."""
    rows = probs.double().tolist()
    confidences = [max(r) for r in rows]
    correct = [float(r.index(max(r)) == t) for r, t in zip(rows, target.tolist(), strict=True)]
    total = 0.0
    for b in range(n_bins):
        lower, upper = b / n_bins, (b + 1) / n_bins
        members = [
            i
            for i, c in enumerate(confidences)
            if lower <= c < upper or (b == n_bins - 1 and c == 1.0)
        ]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            total += len(members) / len(rows) * abs(accuracy - confidence)
    return total


# -- per-class, overall, balanced --------------------------------------------------------------
def test_per_class_and_overall_error_on_fixed_predictions():
    probs, target = fixed_predictions()
    metric = LongTailMetrics(NUM_CLASSES)
    metric.update(probs, target)
    results = metric.compute()
    torch.testing.assert_close(results["per_class_error"], torch.tensor([0.25, 0.5, 0.0, 1.0]))
    assert results["error"].item() == pytest.approx(3 / 10)


def test_balanced_error_is_the_mean_of_per_class_errors_not_of_samples():
    probs, target = fixed_predictions()
    results = long_tail_metrics(probs, target, NUM_CLASSES)
    assert results["balanced_error"].item() == pytest.approx((0.25 + 0.5 + 0.0 + 1.0) / 4)
    assert results["balanced_error"].item() != pytest.approx(results["error"].item())


def test_class_without_samples_has_nan_error_and_balanced_error_skips_it():
    probs, target = fixed_predictions()
    keep = target != 3
    results = long_tail_metrics(probs[keep], target[keep], NUM_CLASSES)
    assert math.isnan(results["per_class_error"][3].item())
    assert results["balanced_error"].item() == pytest.approx((0.25 + 0.5 + 0.0) / 3)


# -- many / medium / few -----------------------------------------------------------------------
def test_shot_groups_are_many_above_100_few_below_20_medium_inclusive_between():
    groups = shot_groups([101, 100, 50, 20, 19, 1])
    assert [SHOT_GROUPS[g] for g in groups.tolist()] == [
        "many",
        "medium",
        "medium",
        "medium",
        "few",
        "few",
    ]


def test_shot_group_errors_on_fixed_predictions_default_thresholds():
    probs, target = fixed_predictions()
    results = long_tail_metrics(probs, target, NUM_CLASSES, class_counts=TRAIN_COUNTS)
    assert results["many_shot_error"].item() == pytest.approx(0.25)  # class 0
    assert results["medium_shot_error"].item() == pytest.approx((0.5 + 0.0) / 2)  # classes 1, 2
    assert results["few_shot_error"].item() == pytest.approx(1.0)  # class 3


@pytest.mark.parametrize(
    ("many_threshold", "few_threshold", "expected"),
    [
        # n > 19: classes 0, 1, 2; 19 ≤ n ≤ 19: class 3; n < 19: none.
        (19, 19, {"many": (0.25 + 0.5 + 0.0) / 3, "medium": 1.0, "few": math.nan}),
        # n > 499: class 0; 101 ≤ n ≤ 499: none; n < 101: classes 1, 2, 3.
        (499, 101, {"many": 0.25, "medium": math.nan, "few": (0.5 + 0.0 + 1.0) / 3}),
    ],
)
def test_shot_group_errors_with_custom_thresholds_and_empty_groups_nan(
    many_threshold, few_threshold, expected
):
    probs, target = fixed_predictions()
    metric = LongTailMetrics(
        NUM_CLASSES,
        class_counts=TRAIN_COUNTS,
        many_threshold=many_threshold,
        few_threshold=few_threshold,
    )
    metric.update(probs, target)
    results = metric.compute()
    for group, value in expected.items():
        got = results[f"{group}_shot_error"].item()
        assert math.isnan(got) if math.isnan(value) else got == pytest.approx(value)


def test_shot_group_errors_are_nan_until_class_counts_are_set():
    probs, target = fixed_predictions()
    metric = LongTailMetrics(NUM_CLASSES)
    metric.update(probs, target)
    assert all(math.isnan(metric.compute()[f"{g}_shot_error"].item()) for g in SHOT_GROUPS)
    metric.set_class_counts(TRAIN_COUNTS)  # after compute(): the cached result must not stay
    assert metric.compute()["few_shot_error"].item() == pytest.approx(1.0)


# -- ECE and reliability bins --------------------------------------------------------------------
def test_ece_on_three_samples_by_hand():
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.45, 0.55]])
    target = torch.tensor([0, 1, 1])
    # 10 bins: [0.9, 1.0] holds two samples, accuracy 1/2, confidence 0.95 → gap 0.45;
    # [0.5, 0.6) holds one, accuracy 1, confidence 0.55 → gap 0.45.
    results = long_tail_metrics(probs, target, 2, n_bins=10)
    assert results["ece"].item() == pytest.approx(2 / 3 * 0.45 + 1 / 3 * 0.45)
    assert results["bin_count"].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 2]


@pytest.mark.parametrize("n_bins", [15, 10, 1])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_equals_torchmetrics_and_a_float64_restatement(n_bins, seed):
    probs, target = random_predictions(700, 6, seed)
    metric = LongTailMetrics(6, n_bins=n_bins)
    reference = MulticlassCalibrationError(num_classes=6, n_bins=n_bins, norm="l1")
    for chunk in range(0, 700, 128):
        metric.update(probs[chunk : chunk + 128], target[chunk : chunk + 128])
        reference.update(probs[chunk : chunk + 128], target[chunk : chunk + 128])
    ece = metric.compute()["ece"].item()
    assert ece == pytest.approx(reference.compute().item(), abs=1e-6)
    assert ece == pytest.approx(ece_float64(probs, target, n_bins), abs=1e-6)


def test_ece_equals_torchmetrics_when_softmax_saturates_to_exactly_one():
    # s = 30 cosine logits saturate float32 softmax: confidence exactly 1.0 is common for LDAM.
    probs, target = random_predictions(300, 5, seed=2, scale=30.0)
    assert (probs.max(dim=1).values == 1.0).sum() > 10
    probs[:5] = torch.eye(5)  # and some exact bin edges: 0.0 and 1.0
    reference = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")
    ece = long_tail_metrics(probs, target, 5)["ece"]
    assert ece.item() == pytest.approx(reference(probs, target).item(), abs=1e-6)


def test_reliability_bins_equal_hand_binning_with_the_last_bin_closed():
    probs, target = random_predictions(400, 3, seed=3)
    probs[:4] = torch.tensor([[1.0, 0.0, 0.0]] * 4)  # confidence 1.0 belongs to the last bin
    results = long_tail_metrics(probs, target, 3, n_bins=15)
    confidence, prediction = probs.double().max(dim=1)
    correct = (prediction == target).double()
    for b in range(15):
        lower, upper = b / 15, (b + 1) / 15
        members = [
            i
            for i, c in enumerate(confidence.tolist())
            if lower <= c < upper or (b == 14 and c == 1.0)
        ]
        assert results["bin_count"][b].item() == len(members)
        if members:
            assert results["bin_accuracy"][b].item() == pytest.approx(
                correct[members].mean().item(), abs=1e-6
            )
            assert results["bin_confidence"][b].item() == pytest.approx(
                confidence[members].mean().item(), abs=1e-6
            )
        else:
            assert math.isnan(results["bin_accuracy"][b].item())


# -- the Metric as a state machine -------------------------------------------------------------
def test_several_updates_equal_one_update_and_the_functional_form():
    probs, target = random_predictions(500, 7, seed=4)
    counts = [300, 150, 90, 40, 20, 10, 3]
    incremental = LongTailMetrics(7, class_counts=counts)
    for chunk in torch.split(torch.arange(500), 64):
        incremental.update(probs[chunk], target[chunk])
    at_once = LongTailMetrics(7, class_counts=counts)
    at_once.update(probs, target)
    functional = long_tail_metrics(probs, target, 7, class_counts=counts)
    a, b = incremental.compute(), at_once.compute()
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, equal_nan=True)
        torch.testing.assert_close(functional[key], b[key], atol=1e-6, rtol=0, equal_nan=True)


def test_states_are_sums_so_shards_merge_exactly_as_ddp_all_reduce():
    probs, target = random_predictions(300, 5, seed=5)
    whole = LongTailMetrics(5)
    whole.update(probs, target)
    rank0, rank1 = LongTailMetrics(5), LongTailMetrics(5)
    rank0.update(probs[::2], target[::2])
    rank1.update(probs[1::2], target[1::2])
    assert set(rank0._reductions.values()) == {dim_zero_sum}
    assert all(not isinstance(getattr(rank0, name), list) for name in rank0._defaults)
    rank0.merge_state(rank1)
    merged, expected = rank0.compute(), whole.compute()
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key], atol=1e-6, rtol=0, equal_nan=True)


def test_forward_returns_the_batch_result_and_keeps_accumulating():
    probs, target = fixed_predictions()
    metric = LongTailMetrics(NUM_CLASSES)
    batch = metric(probs[:3], target[:3])  # three correct class-0 samples
    assert batch["error"].item() == 0.0
    metric(probs[3:], target[3:])
    assert metric.compute()["error"].item() == pytest.approx(3 / 10)


def test_reset_clears_everything_accumulated():
    probs, target = fixed_predictions()
    metric = LongTailMetrics(NUM_CLASSES, class_counts=TRAIN_COUNTS)
    metric.update(probs, target)
    metric.reset()
    metric.update(probs[:3], target[:3])  # three correct class-0 samples
    results = metric.compute()
    assert results["error"].item() == 0.0
    assert results["bin_count"].sum().item() == 3
    assert metric.class_counts.tolist() == TRAIN_COUNTS  # counts are configuration, not state


def test_compute_returns_documented_keys_and_shapes():
    probs, target = random_predictions(50, NUM_CLASSES, seed=6)
    results = long_tail_metrics(probs, target, NUM_CLASSES, TRAIN_COUNTS, n_bins=12)
    assert set(results) == {
        *SCALAR_KEYS,
        "per_class_error",
        "per_class_calibration_error",
        "bin_confidence",
        "bin_accuracy",
        "bin_count",
    }
    assert all(results[key].dim() == 0 for key in SCALAR_KEYS)
    assert results["per_class_error"].shape == (NUM_CLASSES,)
    assert all(results[k].shape == (12,) for k in ("bin_confidence", "bin_accuracy", "bin_count"))
    assert results["bin_count"].sum().item() == 50


def test_bfloat16_probabilities_are_accepted():
    probs, target = random_predictions(64, NUM_CLASSES, seed=7)
    low = long_tail_metrics(probs.bfloat16(), target, NUM_CLASSES)
    high = long_tail_metrics(probs.bfloat16().float(), target, NUM_CLASSES)
    torch.testing.assert_close(low["ece"], high["ece"])


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "n_bins": 0}, "n_bins"),
        ({"num_classes": 3, "many_threshold": 10, "few_threshold": 20}, "many_threshold"),
        ({"num_classes": 3, "few_threshold": -1}, "few_threshold"),
        ({"num_classes": 3, "class_counts": [5, 0, 2]}, "class_counts"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        LongTailMetrics(**kwargs)


def test_class_counts_of_the_wrong_length_name_both_numbers():
    with pytest.raises(ValueError, match=r"3 entries but num_classes is 4"):
        LongTailMetrics(4).set_class_counts([10, 5, 1])


def test_wrong_shapes_are_reported():
    metric = LongTailMetrics(4)
    with pytest.raises(ValueError, match=r"probs must have shape \(N, 4\)"):
        metric.update(torch.rand(8, 3), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="target must have shape"):
        metric.update(torch.rand(8, 4), torch.zeros(8, 1, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_update_on_cuda_never_synchronises_with_the_host():
    probs, target = random_predictions(256, 10, seed=8)
    metric = LongTailMetrics(10, class_counts=list(range(100, 0, -10))).cuda()
    probs, target = probs.cuda(), target.cuda()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            metric.update(probs, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metric.cell_count.device.type == "cuda"
    assert metric.compute()["ece"].item() == pytest.approx(
        long_tail_metrics(probs.cpu(), target.cpu(), 10)["ece"].item(), abs=1e-6
    )


# -- NLL, Brier, classwise ECE (written again here in float64 with plain loops) ---------------
def _reference_calibration(probs, target, num_classes, n_bins, groups):
    p = probs.double()
    n = len(target)
    tiny = torch.finfo(torch.float32).tiny
    nll = [-math.log(max(p[i, target[i]].item(), tiny)) for i in range(n)]
    brier = [
        sum((p[i, j].item() - (1.0 if j == target[i] else 0.0)) ** 2 for j in range(num_classes))
        for i in range(n)
    ]

    def bin_of(value):  # torchmetrics' bins, c = 1 in the last
        return min(int(value * n_bins), n_bins)

    per_class = []
    for j in range(num_classes):
        bins: dict[int, list[tuple[float, float]]] = {}
        for i in range(n):
            bins.setdefault(bin_of(p[i, j].item()), []).append(
                (p[i, j].item(), 1.0 if target[i] == j else 0.0)
            )
        per_class.append(
            sum(abs(sum(h for _, h in m) - sum(q for q, _ in m)) for m in bins.values()) / n
        )
    out = {
        "nll": sum(nll) / n,
        "brier": sum(brier) / n,
        "classwise_ece": sum(per_class) / num_classes,
        "per_class": per_class,
    }
    for g, name in enumerate(SHOT_GROUPS):
        members = [i for i in range(n) if groups[target[i]] == g]
        classes = [j for j in range(num_classes) if groups[j] == g]
        out[f"{name}_shot_nll"] = sum(nll[i] for i in members) / len(members)
        out[f"{name}_shot_brier"] = sum(brier[i] for i in members) / len(members)
        out[f"{name}_shot_classwise_ece"] = sum(per_class[j] for j in classes) / len(classes)
        bins = {}
        for i in members:
            confidence, prediction = p[i].max(0)
            bins.setdefault(bin_of(confidence.item()), []).append(
                (confidence.item(), float(prediction.item() == target[i]))
            )
        out[f"{name}_shot_ece"] = sum(
            abs(sum(c for _, c in m) - sum(q for q, _ in m)) for m in bins.values()
        ) / len(members)
    return out


def test_nll_brier_classwise_ece_and_shot_groups_match_plain_loops():
    probs, target = random_predictions(300, NUM_CLASSES, seed=11)
    target = target.tolist()
    groups = shot_groups(TRAIN_COUNTS).tolist()
    expected = _reference_calibration(probs, target, NUM_CLASSES, 10, groups)
    metric = LongTailMetrics(NUM_CLASSES, class_counts=TRAIN_COUNTS, n_bins=10)
    for chunk in range(3):  # accumulated over batches
        rows = slice(100 * chunk, 100 * (chunk + 1))
        metric.update(probs[rows], torch.tensor(target[rows]))
    for results in (
        metric.compute(),
        long_tail_metrics(probs, torch.tensor(target), NUM_CLASSES, TRAIN_COUNTS, n_bins=10),
    ):
        for key, value in expected.items():
            if key == "per_class":
                got = results["per_class_calibration_error"].tolist()
                assert got == pytest.approx(value, abs=1e-5)
            else:
                assert results[key].item() == pytest.approx(value, abs=1e-5), key


def test_nll_of_a_saturated_wrong_prediction_is_finite():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    results = long_tail_metrics(probs, torch.tensor([1, 0]), 2)
    floor = -math.log(torch.finfo(torch.float32).tiny)
    assert results["nll"].item() == pytest.approx((floor + math.log(2)) / 2)
    assert results["brier"].item() == pytest.approx((2.0 + 0.5) / 2)
