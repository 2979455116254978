"""Multi-label losses on float ``(N, C)`` targets (NaN = unknown) against their formulas.

BCE, ASL (Ben-Baruch et al., ICCV 2021) and the Distribution-Balanced loss (Wu et al., ECCV
2020; the official ``ResampleLoss``) are written again here in float64 with plain loops; the
sigmoid focal loss is compared with ``torchvision.ops.sigmoid_focal_loss`` and GHM-C with
mmdetection's ``label_weight`` semantics on the known entries.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ltlight.losses import (
    AsymmetricLoss,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    DistributionBalancedLoss,
    FocalLoss,
    GHMCLoss,
    LDAMLoss,
    SigmoidFocalLoss,
)

N, C = 8, 4
COUNTS = [60, 25, 9, 3]
NUM_IMAGES = 80
WEIGHT = [0.5, 1.0, 2.0, 4.0]
REDUCTIONS = ["none", "sum", "mean"]
NAN = float("nan")


def multilabel_batch(seed: int = 0, unknown: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and 0/1 targets with a few unknown (NaN) entries and an image without a label."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=gen) * 2.5
    target = (torch.rand(N, C, generator=gen) < 0.4).float()
    target[0] = 0.0  # an image with no positive (DB's r = ∞)
    target[1, 3] = 1.0  # the rarest class present
    if unknown:
        target[2, 1] = target[5, 0] = target[6, 3] = NAN
    return logits, target


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def reduce_known(per_element, target: torch.Tensor, weight, reduction: str) -> torch.Tensor:
    """``w_c·ℓ_ic`` over the known entries: 0 where unknown, sum, or mean over the known."""
    w = [1.0] * C if weight is None else weight
    known = [[not math.isnan(t) for t in row] for row in target.tolist()]
    out = [[w[c] * per_element[i][c] if known[i][c] else 0.0 for c in range(C)] for i in range(N)]
    if reduction == "none":
        return torch.tensor(out, dtype=torch.float64)
    total = sum(map(sum, out))
    count = sum(map(sum, known))
    return torch.tensor(total if reduction == "sum" else total / count, dtype=torch.float64)


def per_element(formula, logits: torch.Tensor, target: torch.Tensor) -> list[list[float]]:
    """``formula(x, y, i, c)`` for every known element (0 for unknown ones)."""
    rows = []
    for i, (xs, ys) in enumerate(zip(logits.double().tolist(), target.tolist(), strict=True)):
        rows.append(
            [
                0.0 if math.isnan(y) else formula(x, y, i, c)
                for c, (x, y) in enumerate(zip(xs, ys, strict=True))
            ]
        )
    return rows


# -- BCE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_bce_equals_torch_bce_with_logits_with_weight_and_pos_weight(reduction, weighted):
    logits, target = multilabel_batch(unknown=False)
    weight = torch.tensor(WEIGHT) if weighted else None
    pos_weight = [1.0, 2.0, 3.0, 5.0]
    ours = BinaryCrossEntropyLoss(pos_weight, weight=weight, reduction=reduction)(logits, target)
    theirs = torch.nn.BCEWithLogitsLoss(
        weight=weight, pos_weight=torch.tensor(pos_weight), reduction=reduction
    )(logits, target)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_leaves_unknown_targets_out_of_the_loss(reduction):
    logits, target = multilabel_batch()

    def bce(x, y, i, c):
        p = sigmoid(x)
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    expected = reduce_known(per_element(bce, logits, target), target, WEIGHT, reduction)
    ours = BinaryCrossEntropyLoss(weight=WEIGHT, reduction=reduction)(logits, target)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.all(torch.isfinite(ours))


# -- ASL ----------------------------------------------------------------------------------------


def asl_formula(gamma_neg: float, gamma_pos: float, clip: float, eps: float = 1e-8):
    def asl(x, y, i, c):
        p = sigmoid(x)
        p_m = min(1.0, 1 - p + clip)
        positive = y * (1 - p) ** gamma_pos * math.log(max(p, eps))
        negative = (1 - y) * (1 - p_m) ** gamma_neg * math.log(max(p_m, eps))
        return -(positive + negative)

    return asl


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("gamma_neg", "gamma_pos", "clip"), [(4, 1, 0.05), (4, 0, 0.05), (2, 1, 0)]
)
def test_asymmetric_loss_matches_its_formula_in_float64(reduction, gamma_neg, gamma_pos, clip):
    logits, target = multilabel_batch()
    formula = asl_formula(gamma_neg, gamma_pos, clip)
    expected = reduce_known(per_element(formula, logits, target), target, WEIGHT, reduction)
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip, weight=WEIGHT, reduction=reduction)
    torch.testing.assert_close(loss(logits, target).double(), expected, rtol=1e-5, atol=1e-6)


def test_asymmetric_loss_sum_is_the_official_value_and_zero_below_the_clip():
    # the official AsymmetricLoss returns −Σ; a negative with p ≤ m has p_m = 1: no loss at all
    logits = torch.tensor([[-5.0, 2.0, 0.3]])
    target = torch.tensor([[0.0, 1.0, 0.0]])
    per = AsymmetricLoss(reduction="none")(logits, target)
    assert per[0, 0] == 0.0  # σ(−5) = 0.0067 < 0.05
    formula = asl_formula(4, 1, 0.05)
    pairs = zip([-5.0, 2.0, 0.3], [0, 1, 0], strict=True)
    expected = sum(formula(x, y, 0, c) for c, (x, y) in enumerate(pairs))
    torch.testing.assert_close(
        AsymmetricLoss(reduction="sum")(logits, target).double(), torch.tensor(expected).double()
    )


def test_asymmetric_loss_with_detached_weight_has_the_gradient_of_the_weighted_log_terms():
    # Detached focusing weight (the official default): ∂ℓ/∂x = w · ∂(−log p_t)/∂x, i.e.
    # positive: −(1 − p)^{γ+}·(1 − p); negative with p > m: (p − m)^{γ−}·p(1 − p)/p_m.
    logits, target = multilabel_batch(seed=3, unknown=False)
    x = logits.double().requires_grad_(True)
    AsymmetricLoss(4.0, 1.0, 0.05, reduction="sum")(x, target).backward()
    expected = []
    for row, ys in zip(logits.double().tolist(), target.tolist(), strict=True):
        out = []
        for v, y in zip(row, ys, strict=True):
            p = sigmoid(v)
            if y == 1:
                out.append(-((1 - p) ** 1.0) * (1 - p))
            elif p > 0.05:
                p_m = 1 - p + 0.05
                out.append((p - 0.05) ** 4.0 * p * (1 - p) / p_m)
            else:
                out.append(0.0)
        expected.append(out)
    torch.testing.assert_close(x.grad, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("gamma_pos", [1.0, 0.5])
def test_asymmetric_loss_with_attached_weight_passes_gradcheck(gamma_pos):
    logits, target = multilabel_batch(seed=4)
    loss = AsymmetricLoss(4.0, gamma_pos, 0.05, detach_focusing_weight=False, weight=WEIGHT)
    x = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: loss(v, target), (x,), fast_mode=True)


def test_asymmetric_loss_detached_and_attached_agree_in_value_not_in_gradient():
    logits, target = multilabel_batch(seed=5, unknown=False)
    grads = []
    for detach in (True, False):
        x = logits.clone().requires_grad_(True)
        value = AsymmetricLoss(detach_focusing_weight=detach)(x, target)
        value.backward()
        grads.append((value.detach(), x.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])


# -- Distribution-Balanced loss -----------------------------------------------------------------


def db_formula(counts, num_images, alpha, beta, mu, kappa, lam, gamma, balance):
    """The official ``ResampleLoss`` (reweight_func='rebalance', focal, logit_reg), per element."""
    bias = [-math.log(num_images / n - 1) * kappa / lam for n in counts]

    def db(x, y, i, c, targets):
        repeat_rate = sum(t / n for t, n in zip(targets[i], counts, strict=True))
        r = (1 / counts[c]) / repeat_rate if repeat_rate > 0 else math.inf
        w = 1 / (1 + math.exp(-beta * (r - mu))) + alpha
        z = x + bias[c]
        u = z * (1 - y) * lam + z * y
        w = w / lam * (1 - y) + w * y
        ce = -(y * math.log(sigmoid(u)) + (1 - y) * math.log(1 - sigmoid(u)))
        p_t = math.exp(-ce)
        return balance * (1 - p_t) ** gamma * w * ce

    return db


DB_SETTINGS = {  # (α, β, μ, κ, λ, γ, balance)
    "voc_mlt": (0.1, 10.0, 0.3, 0.05, 5.0, 2.0, 2.0),
    "coco_mlt": (0.1, 10.0, 0.2, 0.05, 2.0, 2.0, 2.0),
    "no_focal": (0.1, 10.0, 0.3, 0.05, 5.0, 0.0, 1.0),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("setting", list(DB_SETTINGS))
def test_distribution_balanced_loss_matches_the_official_formula_in_float64(reduction, setting):
    alpha, beta, mu, kappa, lam, gamma, balance = DB_SETTINGS[setting]
    logits, target = multilabel_batch()
    formula = db_formula(COUNTS, NUM_IMAGES, alpha, beta, mu, kappa, lam, gamma, balance)
    targets = target.nan_to_num(0.0).tolist()  # unknown entries count as 0 in r
    expected = reduce_known(
        per_element(lambda x, y, i, c: formula(x, y, i, c, targets), logits, target),
        target,
        WEIGHT,
        reduction,
    )
    loss = DistributionBalancedLoss(
        COUNTS,
        NUM_IMAGES,
        alpha,
        beta,
        mu,
        kappa,
        lam,
        gamma,
        balance,
        weight=WEIGHT,
        reduction=reduction,
    )
    torch.testing.assert_close(loss(logits, target).double(), expected, rtol=1e-5, atol=1e-6)


def test_distribution_balanced_defaults_are_the_official_voc_mlt_config():
    loss = DistributionBalancedLoss()
    settings = (loss.alpha, loss.beta, loss.mu, loss.bias_scale, loss.negative_scale)
    assert settings == (0.1, 10.0, 0.3, 0.05, 5.0)
    assert (loss.gamma, loss.balance, loss.rebalance) == (2.0, 2.0, True)


def test_distribution_balanced_counts_and_images_from_setters_give_the_same_loss():
    logits, target = multilabel_batch()
    late = DistributionBalancedLoss()
    late.set_class_counts(COUNTS)
    late.set_num_samples(NUM_IMAGES)
    torch.testing.assert_close(
        late(logits, target), DistributionBalancedLoss(COUNTS, NUM_IMAGES)(logits, target)
    )


def test_distribution_balanced_gradient_passes_gradcheck():
    logits, target = multilabel_batch(seed=7)
    loss = DistributionBalancedLoss(COUNTS, NUM_IMAGES, weight=WEIGHT)
    x = logits.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: loss(v, target), (x,), fast_mode=True)


def test_distribution_balanced_without_images_or_with_too_few_says_how_to_fix_it():
    logits, target = multilabel_batch()
    with pytest.raises(RuntimeError, match=r"needs the number of training images.*num_samples="):
        DistributionBalancedLoss(COUNTS)(logits, target)
    with pytest.raises(ValueError, match=r"num_samples must exceed every class count.*60"):
        DistributionBalancedLoss(COUNTS, num_samples=60)
    with pytest.raises(ValueError, match=r"negative_scale must be > 0, got 0.0"):
        DistributionBalancedLoss(negative_scale=0.0)


# -- sigmoid focal and GHM-C on (N, C) targets ---------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_sigmoid_focal_on_float_targets_equals_torchvision_on_the_known_entries(reduction):
    logits, target = multilabel_batch()
    known = ~target.isnan()
    ours = SigmoidFocalLoss(reduction=reduction)(logits, target)
    theirs = torchvision.ops.sigmoid_focal_loss(logits, target.nan_to_num(0.0), reduction="none")
    theirs = theirs * known
    torch.testing.assert_close(ours, theirs if reduction == "none" else theirs.sum())
    mean = SigmoidFocalLoss()(logits, target)
    torch.testing.assert_close(mean, theirs.sum() / known.sum())


def test_ghm_on_float_targets_leaves_unknown_entries_out_of_counts_and_mean():
    # mmdetection's GHMC with label_weight = known: g, tot and the bin counts over known entries
    logits, target = multilabel_batch()
    known = ~target.isnan()
    y = target.nan_to_num(0.0)
    edges = torch.arange(11, dtype=torch.float64) / 10
    edges[-1] += 1e-6
    g = (torch.sigmoid(logits.double()) - y).abs()
    tot = float(known.sum())
    beta = torch.zeros_like(g)
    nonempty = 0
    for b in range(10):
        in_bin = (g >= edges[b]) & (g < edges[b + 1]) & known
        if in_bin.any():
            beta[in_bin] = tot / float(in_bin.sum())
            nonempty += 1
    beta = beta / nonempty
    bce = F.binary_cross_entropy_with_logits(logits.double(), y, reduction="none")
    expected = (beta * bce).sum() / tot
    torch.testing.assert_close(GHMCLoss(bins=10)(logits, target).double(), expected)


# -- the shared contract: weight (DRW), shapes -------------------------------------------------

MULTI_LABEL_LOSSES = {
    "bce": lambda: BinaryCrossEntropyLoss(),
    "asl": lambda: AsymmetricLoss(),
    "db": lambda: DistributionBalancedLoss(COUNTS, NUM_IMAGES),
    "sigmoid_focal": lambda: SigmoidFocalLoss(),
    "ghm": lambda: GHMCLoss(),
}


@pytest.mark.parametrize("name", list(MULTI_LABEL_LOSSES))
def test_a_per_class_weight_set_later_multiplies_each_class_column_like_drw(name):
    logits, target = multilabel_batch()
    loss = MULTI_LABEL_LOSSES[name]()
    plain = loss(logits, target)
    loss.reduction = "none"
    elements = loss(logits, target)
    loss.reduction = "mean"
    loss.weight = WEIGHT
    weighted = loss(logits, target)
    known = ~target.isnan()
    expected = (elements * torch.tensor(WEIGHT)).sum() / known.sum()
    torch.testing.assert_close(weighted, expected)
    assert not torch.allclose(plain, weighted)
    assert loss.multi_label


@pytest.mark.parametrize(
    "loss", [CrossEntropyLoss(), FocalLoss(), LDAMLoss(COUNTS)], ids=lambda x: type(x).__name__
)
def test_a_single_label_loss_refuses_multi_label_targets_in_one_line(loss):
    logits, target = multilabel_batch()
    with pytest.raises(
        ValueError,
        match=r"single-label loss .* target must be class indices of "
        r"shape \(8,\), got shape \(8, 4\).*use a sigmoid loss",
    ) as info:
        loss(logits, target)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(MULTI_LABEL_LOSSES))
def test_a_multi_label_loss_refuses_targets_of_another_shape_in_one_line(name):
    logits, _ = multilabel_batch()
    with pytest.raises(
        ValueError,
        match=r"float tensor shaped like the logits \(8, 4\), got "
        r"shape \(8, 3\)",
    ) as info:
        MULTI_LABEL_LOSSES[name]()(logits, torch.zeros(8, 3))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(MULTI_LABEL_LOSSES))
def test_unknown_targets_get_exactly_zero_gradient_and_the_rest_a_finite_one(name):
    # small logits leave GHM's last bin (g ≥ 0.9) empty: an unknown entry's β would be inf there
    logits, target = multilabel_batch(seed=9)
    x = (logits * 0.1).requires_grad_(True)
    MULTI_LABEL_LOSSES[name]()(x, target).backward()
    unknown = target.isnan()
    assert torch.all(torch.isfinite(x.grad))
    assert torch.all(x.grad[unknown] == 0) and torch.any(x.grad[~unknown] != 0)
