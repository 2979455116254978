"""ltlight.losses: the shared interface, argument validation, class counts and buffers."""

import inspect
import math

import pytest
import torch

import ltlight.losses as losses
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
    effective_number,
    inverse_frequency,
)

COUNTS = [50, 20, 9, 4, 1]
C = len(COUNTS)

COUNT_LOSSES = [LDAMLoss, LDAMHingeLoss, LogitAdjustedLoss, BalancedSoftmaxLoss]


def all_losses() -> list[LongTailLoss]:
    return [
        CrossEntropyLoss(),
        LDAMLoss(COUNTS),
        LDAMHingeLoss(COUNTS),
        FocalLoss(alpha=[0.25] * C),
        SigmoidFocalLoss(),
        GHMCLoss(momentum=0.75),
        TaiLrLoss(gamma=0.5),
        TaiLrLoss(gamma=0.5, threshold=0.1),
        LogitAdjustedLoss(COUNTS),
        BalancedSoftmaxLoss(COUNTS),
    ]


def batch(n: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, C, generator=gen), torch.randint(0, C, (n,), generator=gen)


# -- the public API ---------------------------------------------------------------------------


def test_public_names_are_exported():
    expected = {
        "LongTailLoss",
        "CrossEntropyLoss",
        "LDAMLoss",
        "LDAMHingeLoss",
        "FocalLoss",
        "SigmoidFocalLoss",
        "GHMCLoss",
        "TaiLrLoss",
        "LogitAdjustedLoss",
        "BalancedSoftmaxLoss",
        "inverse_frequency",
        "effective_number",
    }
    assert expected <= set(losses.__all__)


@pytest.mark.parametrize(
    ("cls", "defaults"),
    [
        (CrossEntropyLoss, {}),
        (LDAMLoss, {"class_counts": None, "max_m": 0.5, "s": 30.0}),
        (LDAMHingeLoss, {"class_counts": None, "max_m": 0.5}),
        (FocalLoss, {"gamma": 2.0, "alpha": None}),
        (SigmoidFocalLoss, {"alpha": 0.25, "gamma": 2.0}),
        (GHMCLoss, {"bins": 10, "momentum": 0.0}),
        (TaiLrLoss, {"gamma": 0.0, "threshold": 0.0}),
        (LogitAdjustedLoss, {"class_counts": None, "tau": 1.0}),
        (BalancedSoftmaxLoss, {"class_counts": None}),
    ],
)
def test_constructor_signature_has_paper_defaults_types_and_no_kwargs(cls, defaults):
    params = inspect.signature(cls.__init__).parameters
    for name, default in {**defaults, "weight": None, "reduction": "mean"}.items():
        assert params[name].default == default, name
    for name, param in params.items():
        assert param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL), name
        if name != "self":
            assert param.annotation is not inspect.Parameter.empty, name


def test_class_weight_functions_have_the_documented_signatures():
    assert list(inspect.signature(inverse_frequency).parameters) == ["class_counts"]
    beta = inspect.signature(effective_number).parameters["beta"]
    assert beta.default == 0.9999


def test_flags_say_which_losses_need_counts_and_which_are_multi_label():
    for loss in all_losses():
        assert loss.requires_class_counts == isinstance(loss, tuple(COUNT_LOSSES))
        assert loss.multi_label == isinstance(loss, (SigmoidFocalLoss, GHMCLoss))


@pytest.mark.parametrize("loss", all_losses(), ids=lambda loss: type(loss).__name__)
def test_forward_and_backward_run_on_meta_tensors_so_there_is_no_host_sync(loss):
    # The meta device has no data: any .item(), bool(tensor), data-dependent shape
    # (bincount, nonzero) or host copy in the hot path raises here.
    loss.weight = torch.linspace(0.5, 2.0, C)
    loss = loss.to("meta")
    logits = torch.randn(6, C, device="meta", requires_grad=True)
    target = torch.randint(0, C, (6,), device="meta")
    for mode in (loss.train(), loss.eval()):
        out = mode(logits, target)
        out.backward()
        assert out.shape == () and out.device.type == "meta"


@pytest.mark.parametrize("loss", all_losses(), ids=lambda loss: type(loss).__name__)
def test_predictive_logits_is_identity_except_ldam_and_sigmoid_losses(loss):
    logits, _ = batch()
    expected = 30.0 * logits if isinstance(loss, LDAMLoss) else logits
    if loss.multi_label:  # softmax(log σ(z)) is the normalised sigmoids σ(z_j) / Σ_k σ(z_k)
        expected = torch.log(torch.sigmoid(logits))
    torch.testing.assert_close(loss.predictive_logits(logits), expected)


@pytest.mark.parametrize("loss", [GHMCLoss(), SigmoidFocalLoss()], ids=lambda x: type(x).__name__)
def test_sigmoid_losses_predict_normalised_sigmoids_not_a_softmax(loss):
    logits = torch.randn(7, 5, dtype=torch.float64) * 4
    sigmoid = 1 / (1 + torch.exp(-logits))
    expected = sigmoid / sigmoid.sum(1, keepdim=True)
    got = torch.softmax(loss.predictive_logits(logits), dim=-1)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, torch.softmax(logits, dim=-1))


def test_ldam_predictive_logits_follow_s():
    logits, _ = batch()
    torch.testing.assert_close(LDAMLoss(COUNTS, s=16.0).predictive_logits(logits), 16.0 * logits)


@pytest.mark.parametrize("loss", all_losses(), ids=lambda loss: type(loss).__name__)
def test_weight_set_after_construction_changes_the_loss_like_drw(loss):
    logits, target = batch()
    before = loss.eval()(logits, target)
    loss.weight = [1.0, 1.0, 1.0, 1.0, 25.0]
    after = loss(logits, target)
    assert not torch.allclose(before, after)
    loss.weight = None
    torch.testing.assert_close(loss(logits, target), before)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TaiLrLoss(gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (lambda: TaiLrLoss(gamma=-0.1), r"gamma must be in \[0, 1\], got -0.1"),
        (lambda: TaiLrLoss(gamma=math.nan), r"gamma must be in \[0, 1\], got nan"),
        (lambda: TaiLrLoss(threshold=1.5), r"threshold must be in \[0, 1\], got 1.5"),
        (lambda: TaiLrLoss(threshold=-0.5), r"threshold must be in \[0, 1\], got -0.5"),
        (lambda: FocalLoss(gamma=-1.0), r"gamma must be >= 0, got -1.0"),
        (lambda: SigmoidFocalLoss(gamma=-0.5), r"gamma must be >= 0, got -0.5"),
        (lambda: SigmoidFocalLoss(alpha=1.5), r"alpha must be in \[0, 1\], got 1.5"),
        (lambda: FocalLoss(alpha=[1.0, -1.0]), r"alpha must be finite and >= 0"),
        (lambda: FocalLoss(alpha=[[1.0, 1.0]]), r"alpha must be None or a 1-D sequence"),
        (lambda: GHMCLoss(bins=0), r"bins must be an integer >= 1, got 0"),
        (lambda: GHMCLoss(bins=2.5), r"bins must be an integer >= 1, got 2.5"),
        (lambda: GHMCLoss(momentum=1.0), r"momentum must be in \[0, 1\), got 1.0"),
        (lambda: GHMCLoss(momentum=-0.1), r"momentum must be in \[0, 1\), got -0.1"),
        (lambda: LDAMLoss(COUNTS, max_m=0.0), r"max_m must be > 0, got 0.0"),
        (lambda: LDAMLoss(COUNTS, max_m=-1.0), r"max_m must be > 0, got -1.0"),
        (lambda: LDAMHingeLoss(COUNTS, max_m=0.0), r"max_m must be > 0, got 0.0"),
        (lambda: LDAMLoss(COUNTS, s=0.0), r"s must be > 0, got 0.0"),
        (lambda: LDAMLoss(COUNTS, s=-30.0), r"s must be > 0, got -30.0"),
        (lambda: LogitAdjustedLoss(COUNTS, tau=-1.0), r"tau must be >= 0, got -1.0"),
        (lambda: effective_number(COUNTS, beta=0.0), r"beta must be in \(0, 1\), got 0.0"),
        (lambda: effective_number(COUNTS, beta=1.0), r"beta must be in \(0, 1\), got 1.0"),
        (lambda: effective_number(COUNTS, beta=1.5), r"beta must be in \(0, 1\), got 1.5"),
    ],
)
def test_bad_argument_raises_value_error_naming_argument_value_and_range(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_tailr_gamma_set_by_a_schedule_is_validated_too():
    loss = TaiLrLoss()
    loss.gamma = 0.9
    assert loss.gamma == 0.9
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 1.2"):
        loss.gamma = 1.2


@pytest.mark.parametrize(
    "make",
    [
        lambda r: CrossEntropyLoss(reduction=r),
        lambda r: LDAMLoss(COUNTS, reduction=r),
        lambda r: LDAMHingeLoss(COUNTS, reduction=r),
        lambda r: FocalLoss(reduction=r),
        lambda r: SigmoidFocalLoss(reduction=r),
        lambda r: GHMCLoss(reduction=r),
        lambda r: TaiLrLoss(reduction=r),
        lambda r: LogitAdjustedLoss(COUNTS, reduction=r),
        lambda r: BalancedSoftmaxLoss(COUNTS, reduction=r),
    ],
)
def test_unknown_reduction_raises_value_error(make):
    with pytest.raises(ValueError, match=r"reduction must be one of .*got 'avg'"):
        make("avg")


BAD_COUNTS = [
    ([[1, 2], [3, 4]], r"class_counts must be a non-empty 1-D sequence"),
    ([], r"class_counts must be a non-empty 1-D sequence"),
    (7, r"class_counts must be a non-empty 1-D sequence"),
    ([3, 0, 2], r"class_counts must be positive integers \(>= 1\), got \[\(1, 0\)\]"),
    ([3, -2], r"class_counts must be positive integers \(>= 1\), got \[\(1, -2\)\]"),
    ([2.5, 3.0], r"class_counts must be integers"),
    ([2.0, math.nan], r"class_counts must be integers"),
    ([2.0, math.inf], r"class_counts must be integers"),
    (["a", "b"], r"class_counts must be a 1-D sequence of positive integers"),
    ([True, False], r"class_counts must be integers"),
]


@pytest.mark.parametrize(("counts", "message"), BAD_COUNTS)
@pytest.mark.parametrize("cls", COUNT_LOSSES)
def test_bad_class_counts_raise_value_error_in_constructor_and_setter(cls, counts, message):
    with pytest.raises(ValueError, match=message):
        cls(counts)
    loss = cls()
    with pytest.raises(ValueError, match=message):
        loss.set_class_counts(counts)


@pytest.mark.parametrize(("counts", "message"), BAD_COUNTS)
@pytest.mark.parametrize("fn", [inverse_frequency, effective_number])
def test_bad_class_counts_raise_value_error_in_class_weights(fn, counts, message):
    with pytest.raises(ValueError, match=message):
        fn(counts)


@pytest.mark.parametrize("cls", COUNT_LOSSES)
def test_loss_without_counts_says_how_to_give_them(cls):
    logits, target = batch()
    with pytest.raises(RuntimeError, match=r"needs the training class counts") as info:
        cls()(logits, target)
    assert "class_counts=" in str(info.value)
    assert "set_class_counts" in str(info.value)


@pytest.mark.parametrize("cls", COUNT_LOSSES)
def test_counts_for_another_number_of_classes_are_reported(cls):
    logits, target = batch()
    with pytest.raises(ValueError, match=r"class_counts for 3 classes but the logits have 5"):
        cls([5, 3, 1])(logits, target)


def test_weight_for_another_number_of_classes_is_reported():
    logits, target = batch()
    with pytest.raises(ValueError, match=r"weight has 3 entries but the logits have 5"):
        CrossEntropyLoss(weight=[1.0, 2.0, 3.0])(logits, target)


def test_focal_alpha_for_another_number_of_classes_is_reported():
    logits, target = batch()
    with pytest.raises(ValueError, match=r"alpha for 2 classes but the logits have 5"):
        FocalLoss(alpha=[1.0, 2.0])(logits, target)


def test_sigmoid_loss_rejects_targets_of_the_wrong_shape():
    logits, _ = batch()
    with pytest.raises(ValueError, match=r"target must be class indices"):
        GHMCLoss()(logits, torch.zeros(7, 3))


# -- class counts and the buffers derived from them -------------------------------------------


@pytest.mark.parametrize("cls", COUNT_LOSSES)
def test_counts_from_constructor_or_setter_give_the_same_loss(cls):
    logits, target = batch()
    late = cls()
    assert late.class_counts is None
    late.set_class_counts(torch.tensor(COUNTS))
    assert late.class_counts.dtype == torch.int64
    assert late.class_counts.tolist() == COUNTS
    torch.testing.assert_close(late(logits, target), cls(COUNTS)(logits, target))


DERIVED_BUFFERS = [
    (LDAMLoss, "margins"),
    (LDAMHingeLoss, "margins"),
    (LogitAdjustedLoss, "logit_offset"),
    (BalancedSoftmaxLoss, "logit_offset"),
]


@pytest.mark.parametrize(("cls", "buffer"), DERIVED_BUFFERS)
def test_derived_buffers_move_with_to_and_stay_out_of_state_dict(cls, buffer):
    loss = cls(COUNTS)
    assert getattr(loss, buffer).shape == (C,)
    assert buffer not in loss.state_dict()
    assert getattr(loss.to("meta"), buffer).device.type == "meta"
    assert getattr(cls(COUNTS).double(), buffer).dtype == torch.float64
    moved_first = cls().to("meta")  # counts set after the move land on the module's device
    moved_first.set_class_counts(COUNTS)
    assert getattr(moved_first, buffer).device.type == "meta"


@pytest.mark.parametrize("cls", COUNT_LOSSES)
def test_checkpoint_loads_whether_or_not_counts_were_set(cls):
    cls().load_state_dict(cls(COUNTS).state_dict())
    cls(COUNTS).load_state_dict(cls().state_dict())


def test_ghm_ema_buffer_round_trips_through_state_dict():
    gen = torch.Generator().manual_seed(1)
    trained = GHMCLoss(momentum=0.75)
    for _ in range(3):
        trained(torch.randn(16, C, generator=gen) * 3, torch.randint(0, C, (16,), generator=gen))
    state = trained.state_dict()
    assert "ema_counts" in state and state["ema_counts"].sum() > 0
    restored = GHMCLoss(momentum=0.75)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.ema_counts, trained.ema_counts)
    logits, target = torch.randn(16, C, generator=gen), torch.randint(0, C, (16,), generator=gen)
    torch.testing.assert_close(restored(logits, target), trained(logits, target))
    torch.testing.assert_close(restored.ema_counts, trained.ema_counts)


# -- class weights ----------------------------------------------------------------------------


def test_inverse_frequency_is_one_over_n_normalised_to_the_number_of_classes():
    weights = inverse_frequency(COUNTS)
    raw = [1.0 / n for n in COUNTS]
    expected = [w * C / sum(raw) for w in raw]
    assert weights.dtype == torch.float32
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))
    assert math.isclose(float(weights.double().sum()), C, rel_tol=1e-6)


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999, 1 - 1e-9])
def test_effective_number_weights_follow_cui_et_al(beta):
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    raw = [(1.0 - beta) / (1.0 - beta**n) for n in counts]
    expected = [w * len(counts) / sum(raw) for w in raw]
    weights = effective_number(counts, beta=beta)
    assert weights.dtype == torch.float32
    torch.testing.assert_close(
        weights, torch.tensor(expected, dtype=torch.float32), rtol=2e-6, atol=0
    )


def test_effective_number_tends_to_inverse_frequency_as_beta_tends_to_one():
    torch.testing.assert_close(
        effective_number(COUNTS, beta=1 - 1e-12), inverse_frequency(COUNTS), rtol=1e-5, atol=0
    )
