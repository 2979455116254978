"""Error under a shifted test prior (SADE / BalPoE protocol), written again by hand."""

import pytest
import torch

from ltlight import LongTailModule
from ltlight.figures import prior_shift_figure
from ltlight.metrics.prior_shift import error_under_prior, shifted_prior, shifted_priors
from ltlight.models import DigitsNet


def test_forward_prior_follows_the_training_order_with_ratio_rho():
    counts = [10, 1000, 100]  # class 1 is the head, then class 2, then class 0
    q = shifted_prior(counts, 50)
    # rank: class 1 → 0, class 2 → 1, class 0 → 2; q ∝ 50^(−rank/2)
    raw = [50 ** (-2 / 2), 50**0, 50 ** (-1 / 2)]
    assert q == pytest.approx([r / sum(raw) for r in raw])
    assert max(q) / min(q) == pytest.approx(50)
    backward = shifted_prior(counts, 50, backward=True)
    assert backward == pytest.approx([q[1], q[0], q[2]])  # the order reversed
    assert shifted_prior(counts, 1) == pytest.approx([1 / 3] * 3)


def test_the_sweep_runs_forward_uniform_backward():
    labels = [label for label, _ in shifted_priors([5, 4, 3, 2, 1])]
    assert labels == [
        "forward 50", "forward 25", "forward 10", "forward 5", "forward 2", "uniform",
        "backward 2", "backward 5", "backward 10", "backward 25", "backward 50",
    ]  # fmt: skip


def test_error_under_prior_is_the_prior_weighted_per_class_error():
    errors = [0.1, 0.5, 0.9]
    q = [2.0, 1.0, 1.0]  # normalised inside
    assert error_under_prior(errors, q) == pytest.approx((0.2 + 0.5 + 0.9) / 4)
    with pytest.raises(ValueError, match="same length"):
        error_under_prior(errors, [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        error_under_prior(errors, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="ratio must be >= 1"):
        shifted_prior([3, 2], 0.5)


def test_adjusting_to_a_known_prior_adds_log_q_minus_log_pi():
    module = LongTailModule(DigitsNet(num_classes=3, hidden=4))
    module.class_counts = [100, 10, 1]
    q = shifted_prior([100, 10, 1], 10, backward=True)
    module.set_logit_adjustment(1.0, target_prior=q)
    z = torch.randn(4, 3, dtype=torch.float64)
    counts = torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64)
    expected = z - torch.log(counts / counts.sum()) + torch.log(torch.tensor(q, dtype=z.dtype))
    torch.testing.assert_close(module.predict_proba(z), torch.softmax(expected, dim=-1))


def test_prior_shift_figure_draws_a_line_per_method():
    labels = ["forward 2", "uniform", "backward 2"]
    fig = prior_shift_figure({"ce": [0.1, 0.2, 0.3], "ce + LA": [0.2, 0.2, 0.2]}, labels)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == ["ce", "ce + LA"]
    assert list(lines[0].get_ydata()) == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="3 priors"):
        prior_shift_figure({"ce": [0.1]}, labels)
