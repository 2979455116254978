"""ImageNet ResNets: torchvision's architectures exactly, the cosine head, timm's head methods."""

import pytest
import torch
import torchvision
from jsonargparse import ArgumentParser
from torch import nn

from ltlight.models import (
    ImageNetResNet,
    NormedLinear,
    get_classifier,
    resnet50,
    resnet152,
    resnext50_32x4d,
)

PAIRS = [
    (resnet50, torchvision.models.resnet50),
    (resnext50_32x4d, torchvision.models.resnext50_32x4d),
    (resnet152, torchvision.models.resnet152),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda f: f.__name__)
def test_same_parameters_as_torchvision_so_its_checkpoints_load(ours, theirs):
    model, reference = ours(num_classes=10), theirs(num_classes=10)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
    model.load_state_dict(reference.state_dict())
    model.eval(), reference.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (1, 2048) and torch.equal(model.fc(pooled), model(x))


def test_parameter_counts_are_the_published_ones():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(resnet50()) == 25_557_032
    assert count(resnext50_32x4d()) == 25_028_904
    assert count(resnet152()) == 60_192_808


def test_cosine_head_and_timm_head_methods():
    model = resnet50(num_classes=7, normed=True)
    assert isinstance(get_classifier(model), NormedLinear) and model.fc.out_features == 7
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and logits.abs().max() <= 1 + 1e-6  # cosines
    model.reset_classifier(4)
    head = model.get_classifier()
    assert isinstance(head, NormedLinear) and head.out_features == 4 and model.num_classes == 4
    plain = resnext50_32x4d(num_classes=3)
    plain.reset_classifier(5)
    assert type(plain.get_classifier()) is nn.Linear and plain.fc.out_features == 5
    with pytest.raises(ValueError, match="num_classes must be an integer >= 1, got 0"):
        resnet50(num_classes=0)


def test_built_from_a_class_path():
    parser = ArgumentParser()
    parser.add_argument("--backbone", type=nn.Module)
    config = parser.parse_args(
        [
            "--backbone",
            '{"class_path": "ltlight.models.resnet152", '
            '"init_args": {"num_classes": 365, "normed": true}}',
        ]
    )
    model = parser.instantiate_classes(config).backbone
    assert isinstance(model, ImageNetResNet) and isinstance(model.fc, NormedLinear)
    assert model.fc.out_features == 365
