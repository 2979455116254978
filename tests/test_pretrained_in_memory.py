"""In-memory data follows pretrained weights (LIFT fine-tunes CLIP on CIFAR-100-LT at 224): the
weights' mean / std, size, evaluation resize and interpolation reach the device loaders, the
module's checkpoint and ``predict_images``; checked against torchvision's ``transforms.v2``."""

import pytest
import timm
import torch
import torchvision.transforms.v2 as T
from safetensors.torch import save_file
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.data import CIFAR10LTDataModule, DigitsLTDataModule
from ltlight.models import timm_backbone

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIZE, CROP_PCT = 48, 0.875  # evaluation: shorter side floor(48 / 0.875) = 54, centre crop 48
VIT = {"img_size": SIZE, "depth": 1, "patch_size": 8}
WEIGHTS = {"mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic", "crop_pct": CROP_PCT}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A tiny ViT "pretrained" elsewhere, saved as .safetensors."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, **VIT)
    path = tmp_path_factory.mktemp("weights") / "vit.safetensors"
    save_file(model.state_dict(), str(path))
    return str(path)


def pretrained(weights_file):
    return timm_backbone(
        "vit_tiny_patch16_224", 10, checkpoint_path=weights_file,
        pretrained_cfg_overlay=WEIGHTS, **VIT,
    )  # fmt: skip


def cifar(cifar10_dir, **kwargs):
    return CIFAR10LTDataModule(data_dir=cifar10_dir, download=False, batch_size=8, **kwargs)


def test_evaluation_batches_are_the_weights_resize_centre_crop_and_normalisation(
    cifar10_dir, weights_file
):
    data = cifar(cifar10_dir)
    assert data.follow_weights(pretrained(weights_file)) is not None
    data.setup("test")
    images, _ = next(iter(data.test_dataloader()))
    reference = T.Compose([
        T.ToDtype(torch.float32, scale=True),
        T.Resize(int(SIZE / CROP_PCT), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.CenterCrop(SIZE),
        T.Normalize(CLIP_MEAN, CLIP_STD),
    ])  # fmt: skip
    expected = torch.stack([reference(image) for image in data.test_data[0][:8]])
    assert images.shape == (8, 3, SIZE, SIZE)
    torch.testing.assert_close(images, expected, atol=1e-4, rtol=0)


def test_training_batches_are_augmented_at_the_datasets_size_then_resized(
    cifar10_dir, weights_file
):
    """The same seed gives the same crops and flips; the weights' loader resizes them."""
    plain, follows = cifar(cifar10_dir), cifar(cifar10_dir)
    follows.follow_weights(pretrained(weights_file))
    plain.setup("fit"), follows.setup("fit")
    native, labels = next(iter(plain.train_dataloader()))
    resized, same_labels = next(iter(follows.train_dataloader()))
    assert torch.equal(labels, same_labels)
    pixels = native * torch.tensor(plain.std).view(1, 3, 1, 1) + torch.tensor(plain.mean).view(
        1, 3, 1, 1
    )  # back to [0, 1]
    resize = T.Resize((SIZE, SIZE), interpolation=T.InterpolationMode.BICUBIC, antialias=True)
    expected = T.Normalize(CLIP_MEAN, CLIP_STD)(resize(pixels))
    assert resized.shape == (8, 3, SIZE, SIZE)
    torch.testing.assert_close(resized, expected, atol=1e-4, rtol=0)


def test_the_checkpoint_records_the_weights_preprocessing_and_predict_images_uses_it(
    cifar10_dir, weights_file, tmp_path
):
    module = LongTailModule(pretrained(weights_file))
    data = cifar(cifar10_dir)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    reloaded = LongTailModule.load_from_checkpoint(
        tmp_path / "model.ckpt", backbone=pretrained(weights_file)
    )
    prep = reloaded.preprocessing
    assert (prep.mean, prep.std, prep.image_size, prep.resize) == (CLIP_MEAN, CLIP_STD, 48, 54)
    assert prep.interpolation == "bicubic"
    images, _ = next(iter(data.test_dataloader()))
    module.eval()
    with torch.no_grad():
        expected = module.predict_proba(module(images))
        raw = data.test_data[0][:8]  # 32×32 uint8, as a user has them
        torch.testing.assert_close(reloaded.predict_images(raw), expected, atol=1e-5, rtol=0)


def test_a_timm_model_without_weights_keeps_the_datasets_preprocessing(cifar10_dir):
    data = cifar(cifar10_dir)
    assert data.follow_weights(timm_backbone("vit_tiny_patch16_224", 10, **VIT)) is None
    data.setup("test")
    images, _ = next(iter(data.test_dataloader()))
    assert images.shape == (8, 3, 32, 32) and data.mean == CIFAR10LTDataModule.mean


def test_grey_images_for_rgb_weights_are_one_line_error(weights_file):
    with pytest.raises(ValueError, match=r"takes 3-channel images; Digits has 1$"):
        DigitsLTDataModule().follow_weights(pretrained(weights_file))


def test_a_model_made_for_grey_images_keeps_the_datasets_mean_and_takes_the_weights_size(
    tmp_path,
):
    """timm's ``in_chans=1`` (a grey model from weights of RGB statistics): the size follows the
    weights, the normalisation stays the dataset's (the weights' is per RGB channel)."""
    grey = {"img_size": 16, "patch_size": 8, "depth": 1, "in_chans": 1}
    path = tmp_path / "grey.safetensors"
    save_file(timm.create_model("vit_tiny_patch16_224", num_classes=10, **grey).state_dict(), path)
    backbone = timm_backbone("vit_tiny_patch16_224", 10, checkpoint_path=str(path), **grey)
    data = DigitsLTDataModule(batch_size=4)
    assert data.follow_weights(backbone) is not None
    data.setup("test")
    images, _ = next(iter(data.test_dataloader()))
    assert images.shape == (4, 1, 16, 16) and data.mean == DigitsLTDataModule.mean
    assert backbone(images).shape == (4, 10)
