"""The text-initialised classifier (LIFT): a tiny open_clip model the test defines and saves,
loaded from the local file (no download); the head's rows are the prompts' text features,
normalised and mapped through the image projection's transpose, as LIFT's
``init_head_text_feat`` computes them, written again here in float64."""

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.callbacks import TextInitialisedClassifier
from ltlight.data import DigitsLTDataModule
from ltlight.models import NormedLinear
from ltlight.models.text_classifier import init_classifier_from_text, readable_class_names

MODEL = "ltlight-test-tiny-clip"
WIDTH, EMBED = 64, 32  # the image tower's width, the joint space
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory):
    """A tiny CLIP config registered with open_clip, its random weights saved to a file."""
    folder = tmp_path_factory.mktemp("clip")
    config = {
        "embed_dim": EMBED,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": WIDTH, "patch_size": 16},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    (folder / f"{MODEL}.json").write_text(json.dumps(config))
    open_clip.add_model_config(str(folder / f"{MODEL}.json"))
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    path = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def reference_weights(path: str, names: list[str], project: bool) -> torch.Tensor:
    """LIFT's computation, in float64: normalise(encode_text), then normalise(t @ projᵀ)."""
    model = open_clip.create_model(MODEL, pretrained=path).double().eval()
    tokens = open_clip.get_tokenizer(MODEL)([f"a photo of a {name}." for name in names])
    with torch.no_grad():
        text = model.encode_text(tokens)
    text = text / text.norm(dim=-1, keepdim=True)
    if not project:
        return text
    mapped = text @ model.visual.proj.t()
    return mapped / mapped.norm(dim=-1, keepdim=True)


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
        fit(module, DigitsLTDataModule(), tmp_path)  # Digits-LT has no class names
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
