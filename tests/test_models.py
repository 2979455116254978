"""Backbones: CIFAR ResNets (He et al. 2016, as in the LDAM-DRW code), NormedLinear, DigitsNet."""

import math

import pytest
import torch
from jsonargparse import ArgumentParser
from torch import nn

from ltlight.models import (
    CifarResNet,
    DigitsNet,
    NormedLinear,
    OptionAShortcut,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
)

FACTORIES = {20: resnet20, 32: resnet32, 44: resnet44, 56: resnet56}


def expected_resnet_parameters(depth: int, num_classes: int, in_channels: int = 3) -> int:
    """Count the paper's architecture by hand: 3×3 convs without bias, BN (γ, β), option A."""
    n = (depth - 2) // 6
    total = 9 * in_channels * 16 + 2 * 16  # stem conv + BN
    in_ch = 16
    for out_ch in (16, 32, 64):
        for _ in range(n):
            total += 9 * in_ch * out_ch + 2 * out_ch  # conv1 + bn1
            total += 9 * out_ch * out_ch + 2 * out_ch  # conv2 + bn2 (shortcut: no parameters)
            in_ch = out_ch
    return total + 64 * num_classes + num_classes  # linear head


@pytest.mark.parametrize("depth", sorted(FACTORIES))
def test_resnet_output_shape_for_each_depth(depth):
    model = FACTORIES[depth](num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_resnet_takes_grey_images_and_other_sizes():
    model = resnet20(num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("depth", "paper_millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85)]
)
def test_resnet_parameter_count_matches_the_paper(depth, paper_millions):
    model = FACTORIES[depth](num_classes=10)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_resnet_parameters(depth, 10)
    assert round(count / 1e6, 2) == paper_millions


def test_resnet32_has_464154_parameters_and_32_weighted_layers():
    model = resnet32(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 464_154
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 32  # 6n + 2 with n = 5; option-A shortcuts add no layer


def test_cosine_head_replaces_linear_and_keeps_parameter_count_minus_bias():
    plain = sum(p.numel() for p in resnet32(num_classes=100).parameters())
    normed_model = resnet32(num_classes=100, normed=True)
    assert isinstance(normed_model.linear, NormedLinear)
    assert sum(p.numel() for p in normed_model.parameters()) == plain - 100


def test_option_a_shortcut_is_strided_identity_with_zero_padded_channels():
    shortcut = OptionAShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert list(shortcut.parameters()) == []
    # Official code: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)).
    for c in range(32):
        for i in range(4):
            for j in range(4):
                expected = x[:, c - 8, 2 * i, 2 * j] if 8 <= c < 24 else torch.zeros(2)
                assert torch.equal(out[:, c, i, j], expected)


def test_down_sampling_blocks_use_option_a_and_identity_elsewhere():
    model = resnet20()
    first_blocks = [model.layer2[0], model.layer3[0]]
    assert all(isinstance(b.shortcut, OptionAShortcut) for b in first_blocks)
    others = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage[1:]]
    others.append(model.layer1[0])
    assert all(isinstance(b.shortcut, nn.Identity) for b in others)
    assert not any("shortcut" in name for name in model.state_dict())


def test_module_names_match_the_official_checkpoint_layout():
    keys = set(resnet32(num_classes=10, normed=True).state_dict())
    expected = {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer3.4.bn2.bias"}
    assert expected <= keys
    assert resnet32(num_classes=10, normed=True).state_dict()["linear.weight"].shape == (64, 10)


def test_convolutions_are_kaiming_normal_initialised():
    torch.manual_seed(0)
    conv = resnet32().layer3[1].conv1  # 64·64·9 = 36,864 weights
    assert abs(conv.weight.std().item() / math.sqrt(2 / (64 * 9)) - 1) < 0.03
    assert abs(conv.weight.mean().item()) < 0.01


def test_normed_linear_outputs_cosines_equal_to_a_float64_computation():
    torch.manual_seed(0)
    head = NormedLinear(5, 3)
    x = torch.randn(4, 5)
    out = head(x)
    w = head.weight.detach().double()
    for n in range(4):
        for j in range(3):
            xn, wj = x[n].double(), w[:, j]
            cosine = (xn @ wj) / (xn.norm() * wj.norm())
            assert out[n, j].item() == pytest.approx(cosine.item(), abs=1e-6)
    assert out.abs().max() <= 1


def test_normed_linear_cosines_reach_plus_and_minus_one():
    head = NormedLinear(4, 2)
    columns = head.weight.detach().T  # one unit vector per class
    out = head(torch.cat([3 * columns[:1], -0.5 * columns[1:]]))
    assert out[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    assert out[1, 1].item() == pytest.approx(-1.0, abs=1e-6)


def test_normed_linear_official_initialisation_gives_unit_class_columns():
    head = NormedLinear(64, 100)
    assert head.weight.shape == (64, 100)
    torch.testing.assert_close(head.weight.norm(dim=0), torch.ones(100), atol=1e-5, rtol=0)


def test_normed_linear_stays_float32_under_bf16_autocast():
    torch.manual_seed(0)
    head = NormedLinear(64, 10)
    x = torch.randn(8, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make",
    [lambda: resnet20(num_classes=5), lambda: resnet20(num_classes=5, normed=True)],
    ids=["linear", "normed"],
)
def test_resnet_runs_channels_last_and_bf16_autocast(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(2, 3, 16, 16)  # small: CPU bf16 convolutions are slow without AMX
    reference = model(x)
    model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x_cl), reference, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x_cl)
    out.float().sum().backward()
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_digits_net_on_8x8_digits_linear_and_cosine_head():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8)
    model = DigitsNet(num_classes=10, hidden=16)
    assert model(x).shape == (16, 10)
    assert sum(p.numel() for p in DigitsNet().parameters()) < 100_000
    cosine = DigitsNet(num_classes=10, normed=True).eval()
    with torch.no_grad():
        assert cosine(x).abs().max() <= 1
    model = model.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (16, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("class_path", "init_args", "expected_head"),
    [
        ("ltlight.models.resnet32", {"num_classes": 100, "normed": True}, NormedLinear),
        ("ltlight.models.DigitsNet", {"num_classes": 10, "hidden": 8}, nn.Linear),
    ],
)
def test_models_build_from_a_jsonargparse_class_path(class_path, init_args, expected_head):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--backbone", type=nn.Module)
    config = parser.parse_object({"backbone": {"class_path": class_path, "init_args": init_args}})
    backbone = parser.instantiate(config).backbone
    assert isinstance(backbone, CifarResNet | DigitsNet)
    assert isinstance(backbone.linear, expected_head)
    assert backbone.num_classes == init_args["num_classes"]


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: resnet32(num_classes=0), "num_classes"),
        (lambda: resnet32(in_channels=0), "in_channels"),
        (lambda: DigitsNet(hidden=0), "hidden"),
        (lambda: NormedLinear(0, 3), "in_features"),
    ],
)
def test_bad_sizes_raise_value_error_naming_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


@pytest.mark.parametrize(
    ("build", "size", "width"),
    [
        (lambda normed: resnet20(num_classes=6, normed=normed), 32, 64),
        (lambda normed: DigitsNet(num_classes=6, hidden=8, normed=normed), 8, 16),
    ],
)
@pytest.mark.parametrize("normed", [False, True])
def test_every_backbone_speaks_timms_head_interface(build, size, width, normed):
    model = build(normed).eval()
    channels = 3 if isinstance(model, CifarResNet) else 1
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert features.dim() == 4 and pooled.shape == (3, width)
        assert torch.equal(pooled, features.mean((2, 3)))
        assert torch.equal(model.forward_head(features), model.get_classifier()(pooled))
        assert torch.equal(model.forward_head(features), model(x))
    model.reset_classifier(4)
    head = model.get_classifier()
    assert head.out_features == 4 and model.num_classes == 4
    assert isinstance(head, NormedLinear) == normed
    assert model(x).shape == (3, 4)
