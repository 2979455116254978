"""Five-crop test-time ensembling (LIFT): ``Resize(size + 24)`` + torchvision's ``FiveCrop(size)``
in the file datamodules' evaluation loaders and in ``predict_images``, and the module's mean of the
five crops' logits; checked against torchvision's FiveCrop written out here."""

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2 as T2
from PIL import Image
from torch import nn
from torchvision.io import decode_image
from trainers import quiet_trainer

from ltlight import LongTailModule
from ltlight.data import ImageFolderLTDataModule
from ltlight.preprocessing import Preprocessing

SIZE = 16
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the file datamodules' (ImageNet)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*test image.*are also training images"),
    pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning"),  # decode_image
]


def noise_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Smooth-ish random colours: every crop differs, so a crop out of order shows."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    return np.array(Image.fromarray(small).resize(size, Image.BILINEAR))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("five_crop") / "train"
    sizes = [(48, 40), (40, 60), (52, 52), (64, 44)]
    for index, name in enumerate(["ant", "ant", "bee", "cat"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(noise_image(index, sizes[index])).save(root / name / f"{index}.png")
    return str(root)


def datamodule(folder, **kwargs):
    options = dict(train=folder, test=folder, batch_size=4, num_workers=0, image_size=SIZE)
    return ImageFolderLTDataModule(**(options | {"five_crop": True} | kwargs))


def torchvision_five_crops(path: str) -> torch.Tensor:
    """torchvision's own pipeline on the decoded uint8 tensor: (5, 3, SIZE, SIZE)."""
    pipeline = T2.Compose([T2.Resize(SIZE + 24, antialias=True), T2.FiveCrop(SIZE)])
    return torch.stack(pipeline(decode_image(path)))


def test_an_evaluation_item_is_torchvisions_five_crops_of_the_resized_image(folder):
    data = datamodule(folder)
    loader = data.test_dataloader()
    dataset = loader.dataset
    for index, relpath in enumerate(data.predict_files):
        crops, _, _ = dataset[index]
        path = f"{folder}/{relpath}"
        assert crops.shape == (5, 3, SIZE, SIZE) and crops.dtype == torch.uint8
        assert torch.equal(crops, torchvision_five_crops(path))
        # and the classic PIL pipeline, up to resampling rounding
        pil = T.Compose([T.Resize(SIZE + 24), T.FiveCrop(SIZE)])(Image.open(path))
        reference = torch.stack([T.functional.pil_to_tensor(crop) for crop in pil])
        assert (crops.float() - reference.float()).abs().mean() < 2.0


def test_evaluation_batches_hold_five_crops_and_training_batches_one(folder):
    data = datamodule(folder)
    images, labels = next(iter(data.test_dataloader()))
    assert images.shape == (4, 5, 3, SIZE, SIZE) and labels.tolist() == [0, 0, 1, 2]
    expected = torch.stack(
        [torchvision_five_crops(f"{folder}/{p}") for p in data.predict_files]
    ).double()
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    expected = (expected / 255 - mean.double()) / std.double()
    torch.testing.assert_close(images.double(), expected, atol=1e-5, rtol=0)
    assert next(iter(data.val_dataloader()))[0].shape == (4, 5, 3, SIZE, SIZE)
    assert next(iter(data.train_dataloader()))[0].shape == (4, 3, SIZE, SIZE)
    plain = datamodule(folder, five_crop=False)  # off: one centre crop
    assert next(iter(plain.test_dataloader()))[0].shape == (4, 3, SIZE, SIZE)


def test_decoding_on_the_device_gives_the_same_five_crops(folder, tmp_path):
    for i, relpath in enumerate(datamodule(folder).predict_files):
        (tmp_path / "jpegs" / str(i % 2)).mkdir(parents=True, exist_ok=True)
        Image.open(f"{folder}/{relpath}").save(tmp_path / "jpegs" / str(i % 2) / f"{i}.jpg")
    jpegs = str(tmp_path / "jpegs")
    in_worker = datamodule(jpegs)
    on_device = datamodule(jpegs, decode_on_device=True)
    a, b = next(iter(in_worker.test_dataloader()))[0], next(iter(on_device.test_dataloader()))[0]
    assert a.shape == b.shape == (4, 5, 3, SIZE, SIZE)
    assert (a - b).abs().mean() < 0.05  # two JPEG decoders (Pillow's, torchvision's)


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_the_module_averages_the_crops_logits():
    torch.manual_seed(0)
    module = LongTailModule(TinyNet().double(), num_classes=3)
    crops = torch.randn(2, 5, 3, SIZE, SIZE, dtype=torch.float64)
    expected = torch.stack(
        [sum(module.backbone(crops[n, k : k + 1])[0] for k in range(5)) / 5 for n in range(2)]
    )
    torch.testing.assert_close(module(crops), expected)


def test_predict_with_five_crop_is_the_softmax_of_the_mean_torchvision_crop_logits(
    folder, tmp_path
):
    torch.manual_seed(0)
    module = LongTailModule(TinyNet())
    data = datamodule(folder)
    trainer = quiet_trainer(default_root_dir=tmp_path)
    probs = torch.cat(trainer.predict(module, datamodule=data))
    assert module.preprocessing.five_crop and module.preprocessing.image_size == SIZE
    normalize = T.Normalize(MEAN, STD)
    with torch.no_grad():
        for row, relpath in zip(probs, data.predict_files, strict=True):
            crops = normalize(torchvision_five_crops(f"{folder}/{relpath}").float() / 255)
            expected = torch.softmax(module.backbone(crops).mean(0), -1)
            torch.testing.assert_close(row, expected, atol=1e-5, rtol=0)
        # validation (and test) evaluate the same averaged logits
        labels = torch.tensor([0, 0, 1, 2])
        expected_loss = -probs[torch.arange(4), labels].log().mean()
        (metrics,) = trainer.validate(module, datamodule=data, verbose=False)
        assert metrics["val/loss"] == pytest.approx(expected_loss.item(), abs=1e-5)
        # predict_images prepares the same five crops from raw pixels (float resize: ~rounding)
        path = f"{folder}/{data.predict_files[0]}"
        pixels = decode_image(path)
        torch.testing.assert_close(module.predict_images(pixels)[0], probs[0], atol=2e-3, rtol=0)


def test_five_crop_preprocessing_round_trips_and_matches_fivecrop():
    prep = Preprocessing(MEAN, STD, image_size=SIZE, resize=20, five_crop=True)
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    pixels = torch.from_numpy(noise_image(9, (56, 44))).permute(2, 0, 1)
    crops = T.FiveCrop(SIZE)(T.Resize(SIZE + 24, antialias=True)(pixels.double()))
    expected = T.Normalize([255 * m for m in MEAN], [255 * s for s in STD])(torch.stack(crops))
    torch.testing.assert_close(prep(pixels)[0].double(), expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="five_crop needs an image_size"):
        Preprocessing(MEAN, STD, five_crop=True)


def test_with_dali_the_five_crops_are_pillows_and_bicubic_is_refused_in_one_line(folder):
    five = next(iter(datamodule(folder, decoder="dali").test_dataloader()))[0]
    assert torch.equal(five, next(iter(datamodule(folder).test_dataloader()))[0])
    bicubic = datamodule(folder, decoder="dali", interpolation="bicubic")
    with pytest.raises(ValueError, match=r"decoder='dali' resizes bilinearly.*'bicubic'"):
        bicubic.train_dataloader()
