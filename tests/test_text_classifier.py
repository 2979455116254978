"""The text-initialised classifier (LIFT): a tiny open_clip model the test defines and saves,
loaded from the local file (no download); the head's rows are the prompts' text features,
normalised and mapped through the image projection's transpose, as LIFT's
``init_head_text_feat`` computes them, written again here in float64."""

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fake_clip import reference_text_weights, text_init_arguments, write_tiny_clip
from torch import nn
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.callbacks import TextInitialisedClassifier
from ltlight.data import DigitsLTDataModule
from ltlight.models import NormedLinear, timm_backbone
from ltlight.models.text_classifier import init_classifier_from_text, readable_class_names

LIFT_DIGITS = Path(__file__).resolve().parents[1] / "configs" / "digits_lt" / "lift.yaml"
MODEL = "ltlight-test-tiny-clip"
WIDTH, EMBED = 64, 32  # the image tower's width, the joint space
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory):
    """A tiny CLIP config registered with open_clip, its random weights saved to a file."""
    return write_tiny_clip(str(tmp_path_factory.mktemp("clip")), MODEL, WIDTH, EMBED)


def reference_weights(path: str, names: list[str], project: bool) -> torch.Tensor:
    return reference_text_weights(MODEL, path, names, project)


class TinyNet(nn.Module):
    """Flattened 8×8 digits → ``WIDTH`` features → a cosine (or linear) head."""

    def __init__(self, num_classes: int = 10, features: int = WIDTH, normed: bool = True):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, features), nn.ReLU())
        head = NormedLinear if normed else nn.Linear
        self.fc = head(features, num_classes)

    def forward(self, x):
        return self.fc(self.body(x))


def test_the_cosine_head_holds_the_projected_text_features_of_the_prompts(clip_weights):
    net = TinyNet(num_classes=3)
    names = ["ant", "honey_bee", "cat"]
    init_classifier_from_text(net, names, MODEL, clip_weights)
    expected = reference_weights(clip_weights, ["ant", "honey bee", "cat"], project=True)
    torch.testing.assert_close(net.fc.weight.T.double(), expected, atol=1e-5, rtol=0)
    features = torch.randn(4, WIDTH, dtype=torch.float64)
    cosines = F.normalize(features, dim=-1) @ expected.T  # the head's logits: cos(x, w_j)
    torch.testing.assert_close(net.fc(features.float()).double(), cosines, atol=1e-5, rtol=0)


def test_a_head_in_the_joint_space_takes_the_text_features_unmapped(clip_weights):
    linear = TinyNet(num_classes=2, features=EMBED, normed=False)
    init_classifier_from_text(linear, ["ant", "cat"], MODEL, clip_weights)
    expected = reference_weights(clip_weights, ["ant", "cat"], project=False)
    torch.testing.assert_close(linear.fc.weight.double(), expected, atol=1e-5, rtol=0)
    assert torch.equal(linear.fc.bias, torch.zeros(2))


class NamedDigits(DigitsLTDataModule):
    class_names = tuple(DIGITS)


class NamelessDigits(DigitsLTDataModule):
    class_names = None


def fit(module, data, tmp_path):
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data)


def test_fit_starts_from_the_datamodules_class_names_text_features(clip_weights, tmp_path):
    callback = TextInitialisedClassifier(MODEL, pretrained=clip_weights)
    module = LongTailModule(
        TinyNet(), optimizer=lambda p: torch.optim.SGD(p, lr=0.0), callbacks=[callback]
    )
    fit(module, NamedDigits(), tmp_path)
    expected = reference_weights(clip_weights, DIGITS, project=True)
    torch.testing.assert_close(module.backbone.fc.weight.T.double(), expected, atol=1e-5, rtol=0)


def test_without_class_names_or_with_another_count_it_is_one_line_error(clip_weights, tmp_path):
    callback = TextInitialisedClassifier(MODEL, pretrained=clip_weights)
    module = LongTailModule(TinyNet(), callbacks=[callback])
    with pytest.raises(ValueError, match="needs class names: the datamodule has none") as error:
        fit(module, NamelessDigits(), tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="3 class names for a classifier of 10 classes"):
        init_classifier_from_text(TinyNet(), ["a", "b", "c"], MODEL, clip_weights)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt.*no such file"):
        init_classifier_from_text(TinyNet(), DIGITS, MODEL, str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match=r"the classifier takes 48 features.*have 32"):
        init_classifier_from_text(TinyNet(features=48), DIGITS, MODEL, clip_weights)
    with pytest.raises(ValueError, match="template must contain"):
        TextInitialisedClassifier(MODEL, template="a photo")


def test_class_names_become_words_a_text_tower_reads():
    names = readable_class_names(["n01440764", "n01443537"])  # ImageNet-LT's WordNet ids
    assert names == ["tench", "goldfish"]
    assert readable_class_names(["n01440764", "n00000001"]) == ["tench", "n00000001"]
    assert readable_class_names(["a/airfield", "b/bakery/shop", "ice_cream"]) == [
        "airfield",
        "bakery shop",
        "ice cream",
    ]


def test_a_resumed_run_keeps_its_checkpoints_classifier_and_loads_no_clip(clip_weights, tmp_path):
    first = LongTailModule(TinyNet(), callbacks=[TextInitialisedClassifier(MODEL, clip_weights)])
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(first, datamodule=NamedDigits())
    trainer.save_checkpoint(tmp_path / "one_step.ckpt")
    trained = first.backbone.fc.weight.detach().clone()
    # a weights file that is not there: loading CLIP on resume would raise
    absent = TextInitialisedClassifier(MODEL, pretrained=str(tmp_path / "absent.pt"))
    resumed = LongTailModule(TinyNet(), callbacks=[absent])
    again = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=str(tmp_path))
    again.fit(resumed, datamodule=NamedDigits(), ckpt_path=tmp_path / "one_step.ckpt")
    assert torch.equal(resumed.backbone.fc.weight, trained)  # max_steps reached: no new step


def test_the_lift_config_starts_its_cosine_head_from_the_class_names_text_features(
    tiny_clip, tmp_path, monkeypatch
):
    """`ltlight fit --config configs/digits_lt/lift.yaml`, a tiny ViT for CLIP's image tower and
    a tiny CLIP file for its text tower: with lr 0 the head after a step is the initialisation,
    the projected text features of "a photo of a 0." … "a photo of a 9."."""
    from ltlight.cli import LongTailCLI

    monkeypatch.chdir(tmp_path)
    name, path = tiny_clip
    backbone = "--model.init_args.backbone.init_args"
    cli = LongTailCLI(
        args=[
            "--config", str(LIFT_DIGITS), "--trainer.logger=false", "--trainer.precision=32",
            "--trainer.fast_dev_run=1", "--model.init_args.optimizer.init_args.lr=0",
            f"{backbone}.model_name=vit_base_patch16_clip_quickgelu_224",
            f"{backbone}.pretrained=false",
            f'{backbone}.create_kwargs={{"depth": 1, "patch_size": 4, "img_size": 8, '
            '"in_chans": 1, "embed_dim": 192, "num_heads": 3}',
            *text_init_arguments(name, path),
        ],
        run=False,
    )  # fmt: skip
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    head = cli.model.backbone.get_classifier()
    assert isinstance(head, NormedLinear)
    expected = reference_text_weights(name, path, list("0123456789"), project=True)
    torch.testing.assert_close(head.weight.T.double(), expected, atol=1e-5, rtol=0)


def test_a_timm_backbone_that_is_not_a_clip_image_tower_is_warned_about(tiny_clip):
    """Widths that agree catch nothing (ConvNeXt-T and ViT-B/16 are both 768 wide): the
    backbone's weights say whether it is CLIP's image tower."""
    name, path = tiny_clip
    small = {"depth": 1, "img_size": 32, "embed_dim": 192, "num_heads": 3}
    not_clip = timm_backbone("vit_tiny_patch16_224", 3, head="cosine", **small)
    with pytest.warns(UserWarning, match=r"vit_tiny_patch16_224\..*is not a CLIP image tower"):
        init_classifier_from_text(not_clip, ["ant", "bee", "cat"], name, path)
    clip_tower = timm_backbone("vit_base_patch16_clip_quickgelu_224", 3, head="cosine", **small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_classifier_from_text(clip_tower, ["ant", "bee", "cat"], name, path)
