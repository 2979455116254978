"""Preprocessing follows the weights: a pretrained backbone's mean / std, input size, crop fraction
and interpolation reach the file datamodules' loaders, the module's checkpoint and
``predict_images``; checked against timm's own ``create_transform`` and torchvision's weights'
``transforms()``."""

import numpy as np
import pytest
import timm
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from torch import nn
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.data import ImageFolderLTDataModule
from ltlight.preprocessing import Preprocessing, pretrained_cfg_of_torchvision_weights

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COUNTS = {"ant": 5, "bee": 3, "cat": 2}
# the test split is the training folder here (a warning says so)
pytestmark = pytest.mark.filterwarnings("ignore:.*test image.*are also training images")


def clip_style_vit(num_classes: int = 3, **overlay) -> nn.Module:
    """A tiny timm ViT whose pretrained_cfg is CLIP-like: bicubic, CLIP's mean / std, 32 px."""
    config = dict(
        input_size=(3, 32, 32),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        interpolation="bicubic",
        crop_pct=0.8,
    )
    return timm.create_model(
        "vit_tiny_patch16_224",
        img_size=32,
        depth=2,
        num_classes=num_classes,
        pretrained_cfg_overlay=config | overlay,
    )


def smooth_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A smooth colour field (PIL and tensor resampling agree closely on it), uint8 HWC."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    channels = [
        127 + 120 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * x + rng.uniform(0.5, 2) * y + c))
        for c in rng.uniform(0, 1, 3)
    ]
    return np.stack(channels, axis=-1).round().clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained") / "train"
    # sizes whose 32-of-40 centre crop lands on whole pixels (shorter side 40 or 80), so the
    # loader's one resample of the crop box and timm's resize-then-crop sample the same grid
    sizes = iter([(48, 40), (40, 56), (96, 80), (80, 112), (40, 40), (60, 40), (80, 80)] * 2)
    seed = 0
    for name, count in COUNTS.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(smooth_image(seed, next(sizes))).save(root / name / f"{i}.png")
            seed += 1
    return str(root)


def datamodule(folder, **kwargs) -> ImageFolderLTDataModule:
    options = dict(train=folder, test=folder, batch_size=4, num_workers=0, color_jitter=0.0)
    return ImageFolderLTDataModule(**(options | kwargs))


def test_the_weights_data_config_is_timms_resolve_model_data_config():
    model = clip_style_vit()
    config = resolve_model_data_config(model)
    prep = Preprocessing.from_backbone(model)
    assert prep.mean == config["mean"] == CLIP_MEAN and prep.std == CLIP_STD
    assert (3, prep.image_size, prep.image_size) == config["input_size"]
    assert prep.interpolation == config["interpolation"] == "bicubic"
    assert prep.resize == 40 and prep.crop_pct == pytest.approx(config["crop_pct"])
    assert Preprocessing.from_backbone(nn.Linear(2, 2)) is None  # no pretrained_cfg: no opinion


def test_a_vit_made_for_32_pixels_gets_32_pixel_inputs_whatever_its_default_config_says():
    model = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=2)
    assert resolve_model_data_config(model)["input_size"] == (3, 224, 224)  # timm's default cfg
    prep = Preprocessing.from_backbone(model)
    assert prep.image_size == 32 and prep.resize == 35  # floor(32 / 0.9), vit_tiny's crop_pct
    wrapper = nn.Sequential(model)  # a wrapper that keeps timm's pretrained_cfg
    wrapper.pretrained_cfg = model.pretrained_cfg
    assert Preprocessing.from_backbone(wrapper).image_size == 32
    dynamic = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, depth=1, num_classes=2, dynamic_img_size=True
    )
    assert Preprocessing.from_backbone(dynamic).image_size == 224  # accepts any size: the cfg's


@pytest.mark.parametrize(
    "weights",
    [
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
        torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1,
    ],
    ids=str,
)
def test_torchvision_weights_give_their_own_transforms_resize_crop_and_filter(weights):
    reference = weights.transforms()
    model = torchvision.models.resnet18(num_classes=2)
    model.pretrained_cfg = pretrained_cfg_of_torchvision_weights(weights)
    prep = Preprocessing.from_backbone(model)
    assert prep.image_size == reference.crop_size[0]
    assert prep.resize == reference.resize_size[0]  # 224 / 232 must not floor to 231
    assert prep.interpolation == reference.interpolation.value
    assert list(prep.mean) == reference.mean and list(prep.std) == reference.std


def test_evaluation_loader_applies_the_weights_transform_as_timm_writes_it(folder):
    model = clip_style_vit()
    data = datamodule(folder)
    assert (data.image_size, data.resize, data.interpolation) == (224, 256, "bilinear")
    data.follow_weights(model)
    loader = data.test_dataloader()
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and loader.dataset.interpolation == "bicubic"
    timm_eval = create_transform(**resolve_model_data_config(model), is_training=False)
    # timm's pipeline: Resize(40, bicubic), CenterCrop(32), ToTensor, Normalize(CLIP)
    described = repr(timm_eval)
    assert "size=40" in described and "bicubic" in described and "size=(32, 32)" in described
    paths = data.predict_files[:4]
    expected = torch.stack([timm_eval(Image.open(f"{folder}/{p}").convert("RGB")) for p in paths])
    # one resample of the crop box (ours, torch's bicubic) vs resize-then-crop (timm, PIL's):
    # at most a few levels of 255 apart (measured: mean 0.03, max 2)
    levels = ((images - expected) * torch.tensor(CLIP_STD).view(1, 3, 1, 1) * 255).abs()
    assert levels.mean() < 0.5 and levels.max() <= 4.0
    assert labels.tolist() == [0, 0, 0, 0]


def test_training_loader_uses_the_weights_size_mean_and_filter(folder):
    data = datamodule(folder)
    data.follow_weights(clip_style_vit())
    loader = data.train_dataloader()
    images, _ = next(iter(loader))
    assert images.shape == (4, 3, 32, 32)
    assert loader.dataset.train and loader.dataset.interpolation == "bicubic"
    assert loader.normalize.mean == CLIP_MEAN and loader.normalize.std == CLIP_STD


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [("image_size", 64, "32"), ("interpolation", "bilinear", "'bicubic'"), ("resize", 36, "40")],
)
def test_a_typed_value_that_contradicts_the_weights_is_one_error_naming_both(
    folder, argument, value, expected
):
    data = datamodule(folder, **{argument: value})
    with pytest.raises(ValueError, match=rf"{argument}={value!r}.*{argument}={expected}") as error:
        data.follow_weights(clip_style_vit())
    assert "\n" not in str(error.value) and "vit_tiny_patch16_224" in str(error.value)
    agreeing = datamodule(folder, image_size=32, interpolation="bicubic", resize=40)
    assert agreeing.follow_weights(clip_style_vit()) is not None  # the same values: no error


def test_a_plain_backbone_leaves_the_datamodule_as_typed(folder):
    data = datamodule(folder, image_size=48)
    assert data.follow_weights(nn.Conv2d(3, 3, 1)) is None
    assert (data.image_size, data.resize, data.interpolation) == (48, 256, "bilinear")


def fit_one_step(module, data, tmp_path):
    trainer = quiet_trainer(max_steps=1, limit_val_batches=1, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data)
    return trainer


def test_fit_follows_the_weights_and_the_checkpoint_carries_them_to_predict_images(
    folder, tmp_path
):
    module = LongTailModule(clip_style_vit(), optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    data = datamodule(folder)
    trainer = fit_one_step(module, data, tmp_path)
    assert trainer.train_dataloader.dataset.size == 32
    prep = module.preprocessing
    assert (prep.image_size, prep.resize, prep.interpolation) == (32, 40, "bicubic")
    assert prep.mean == CLIP_MEAN and prep.class_names == ("ant", "bee", "cat")
    trainer.save_checkpoint(tmp_path / "run.ckpt")

    restored = LongTailModule.load_from_checkpoint(tmp_path / "run.ckpt", backbone=clip_style_vit())
    assert restored.preprocessing == prep
    # `ltlight predict`'s path: a fresh datamodule, the checkpoint; the loader follows the weights
    predictor = quiet_trainer(default_root_dir=str(tmp_path))
    fresh = datamodule(folder)
    predictor.predict(restored, datamodule=fresh, ckpt_path=tmp_path / "run.ckpt")
    loader = predictor.predict_dataloaders
    assert (loader.dataset.size, loader.dataset.interpolation) == (32, "bicubic")
    assert loader.normalize.mean == CLIP_MEAN and restored.preprocessing == prep
    pixels = smooth_image(7, (61, 45))
    probs = restored.predict_images(torch.from_numpy(pixels).permute(2, 0, 1))
    timm_eval = create_transform(**resolve_model_data_config(clip_style_vit()), is_training=False)
    with torch.no_grad():
        reference = torch.softmax(restored.backbone(timm_eval(Image.fromarray(pixels))[None]), -1)
    torch.testing.assert_close(probs, reference, atol=2e-3, rtol=0)


def test_fit_refuses_a_typed_size_the_weights_contradict(folder, tmp_path):
    module = LongTailModule(clip_style_vit())
    with pytest.raises(ValueError, match=r"image_size=224 \(the data's argument\).*=32"):
        fit_one_step(module, datamodule(folder, image_size=224), tmp_path)


def test_preprocessing_round_trips_and_old_checkpoints_read_as_bilinear():
    prep = Preprocessing(CLIP_MEAN, CLIP_STD, 32, 40, ("a", "b"), "bicubic", five_crop=True)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    old = {"mean": [0.5] * 3, "std": [0.25] * 3, "image_size": 8, "resize": 10}
    assert Preprocessing.from_dict(old).interpolation == "bilinear"
    with pytest.raises(ValueError, match="interpolation must be one of"):
        Preprocessing(CLIP_MEAN, CLIP_STD, 32, interpolation="lanczos")


def test_bicubic_predict_images_matches_torchvision_resize_and_center_crop():
    prep = Preprocessing(CLIP_MEAN, CLIP_STD, 32, 40, interpolation="bicubic")
    pixels = torch.from_numpy(smooth_image(3, (80, 50))).permute(2, 0, 1)
    reference = T.Compose(
        [
            T.Resize(40, interpolation=T.InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(32),
            T.Normalize([255 * m for m in CLIP_MEAN], [255 * s for s in CLIP_STD]),
        ]
    )(pixels.double())
    torch.testing.assert_close(prep(pixels)[0].double(), reference, atol=1e-4, rtol=0)


def test_a_model_that_takes_grey_images_is_refused_for_rgb_files(folder):
    """timm's ``in_chans=1`` keeps the weights' RGB mean / std: the first convolution says what
    the model takes."""
    grey = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, in_chans=1)
    with pytest.raises(ValueError, match=r"takes 1-channel images; .* has 3$"):
        datamodule(folder).follow_weights(grey)
