"""GHM-C against a plain re-statement of mmdetection's ``GHMC`` (loop over bins, ``.item()``)."""

import pytest
import torch
import torch.nn.functional as F

from ltlight.losses import GHMCLoss

C = 6


class MMDetGHMC:
    """mmdetection's ``GHMC.forward`` (label_weight all ones, loss_weight 1), loop for loop."""

    def __init__(self, bins: int, momentum: float) -> None:
        self.bins = bins
        self.momentum = momentum
        self.edges = torch.arange(bins + 1).float() / bins
        self.edges[-1] += 1e-6
        self.acc_sum = torch.zeros(bins)

    def weights(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        edges, mmt = self.edges, self.momentum
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        tot = max(float(pred.numel()), 1.0)
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1])
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        if n > 0:
            weights = weights / n
        return weights

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = self.weights(pred, target)
        loss = F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum")
        return loss / max(float(pred.numel()), 1.0)


def spread_batch(gen: torch.Generator, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, C, generator=gen) * 3, torch.randint(0, C, (n,), generator=gen)


def saturated_batch(gen: torch.Generator, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Confident logits: g is near 0 or 1, so the middle bins go empty this step."""
    target = torch.randint(0, C, (n,), generator=gen)
    sign = F.one_hot(target, C) * 2 - 1
    flip = torch.rand(n, C, generator=gen) < 0.2
    logits = sign * torch.where(flip, -1.0, 1.0) * (12 + torch.rand(n, C, generator=gen))
    return logits, target


@pytest.mark.parametrize("bins", [10, 30, 1])
@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_matches_mmdetection_over_several_ema_steps_with_bins_going_empty(bins, momentum):
    gen = torch.Generator().manual_seed(bins)
    ours, reference = GHMCLoss(bins=bins, momentum=momentum), MMDetGHMC(bins, momentum)
    schedule = [spread_batch, spread_batch, saturated_batch, saturated_batch, spread_batch]
    for make in schedule:
        logits, target = make(gen)
        dense = F.one_hot(target, C).float()
        x_ours = logits.clone().requires_grad_(True)
        x_ref = logits.clone().requires_grad_(True)
        value = ours(x_ours, target)
        expected = reference(x_ref, dense)
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
        value.backward()
        expected.backward()
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(ours.ema_counts, reference.acc_sum)
        assert torch.isfinite(value) and torch.all(torch.isfinite(x_ours.grad))


@pytest.mark.parametrize("bins", [1, 2, 3, 7, 10, 11, 22, 30, 64, 100])
def test_elements_exactly_on_and_next_to_bin_edges_fall_in_mmdetections_bins(bins):
    # For 11, 22 and 100 bins, floor(g·bins) in float32 misplaces some g next to an edge.
    # sigmoid(−200) is exactly 0 in float32, so g = |0 − y| = y: the targets place g exactly.
    edges = torch.arange(bins + 1).float() / bins
    g = [torch.tensor(0.0), torch.tensor(1.0)]
    for edge in edges[1:-1]:
        below = edge.clone()
        above = edge.clone()
        for _ in range(3):  # the edge and its three float32 neighbours on each side
            below = torch.nextafter(below, torch.tensor(0.0))
            above = torch.nextafter(above, torch.tensor(1.0))
            g += [below, above]
        g.append(edge)
    y = torch.stack(g).reshape(-1, 1).repeat(1, 2)
    y[:, 1] = 1.0  # second column: g = 1, the top of the last bin
    logits = torch.full_like(y, -200.0)
    assert torch.all(torch.sigmoid(logits) == 0)
    ours = GHMCLoss(bins=bins, reduction="none")(logits, y)
    weights = MMDetGHMC(bins, 0.0).weights(logits, y)
    expected = weights * F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=0)


def test_class_indices_are_one_hot_encoded():
    logits, target = spread_batch(torch.Generator().manual_seed(0))
    dense = F.one_hot(target, C).float()
    torch.testing.assert_close(GHMCLoss()(logits, target), GHMCLoss()(logits, dense))


def test_float_targets_shaped_like_the_logits_are_accepted():
    gen = torch.Generator().manual_seed(4)
    logits, soft = torch.randn(10, C, generator=gen), torch.rand(10, C, generator=gen)
    torch.testing.assert_close(GHMCLoss()(logits, soft), MMDetGHMC(10, 0.0)(logits, soft))


def test_eval_mode_computes_the_same_weights_but_leaves_the_ema_unchanged():
    gen = torch.Generator().manual_seed(2)
    warm_up, (logits, target) = spread_batch(gen), spread_batch(gen)
    training, evaluating = GHMCLoss(momentum=0.9), GHMCLoss(momentum=0.9)
    training(*warm_up)
    evaluating(*warm_up)
    before = evaluating.ema_counts.clone()
    in_eval = evaluating.eval()(logits, target)
    torch.testing.assert_close(evaluating.ema_counts, before)
    torch.testing.assert_close(in_eval, training(logits, target))
    assert not torch.equal(training.ema_counts, before)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_all_elements_in_one_bin_and_empty_ema_bins_stay_finite(momentum):
    logits = torch.full((4, C), 30.0, requires_grad=True)  # g ≈ 0 or 1 only
    target = torch.zeros(4, C)
    loss = GHMCLoss(bins=10, momentum=momentum)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.all(torch.isfinite(logits.grad))
    assert int((loss.ema_counts > 0).sum()) == (1 if momentum else 0)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_per_class_weight_multiplies_each_element_and_mean_is_over_elements(reduction):
    logits, target = spread_batch(torch.Generator().manual_seed(5))
    weight = torch.linspace(0.5, 3.0, C)
    unweighted = GHMCLoss(reduction="none")(logits, target)
    ours = GHMCLoss(weight=weight, reduction=reduction)(logits, target)
    expected = unweighted * weight
    expected = {"none": expected, "sum": expected.sum(), "mean": expected.mean()}[reduction]
    torch.testing.assert_close(ours, expected)
