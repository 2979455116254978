"""The DALI decoder (``decoder="dali"``) against the Pillow one it replaces: the same crop boxes
give the same pixels (bit for bit where Pillow decodes at full size; within a few levels where it
decodes a large crop at reduced size), the same order, shards, resume and bad-file handling."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ltlight.data import FileDataLoader, ImageFolderLTDataModule
from ltlight.data.files.dataset import BadImageError, ImageFileDataset, random_resized_crop_box
from ltlight.data.files.image_list import ImageList
from ltlight.data.sampling import SAMPLE_STREAM

pytest.importorskip("nvidia.dali", reason="the dali extra is in the dev extra: CI runs these")

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
LEVEL = 1 / (255 * 0.25)  # one grey level in the normalised batch


def photo(rng, size):
    """A photo-like image: smooth colour fields plus grain, so a shifted crop looks different."""
    coarse = Image.fromarray(rng.integers(0, 256, (5, 6, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    return Image.fromarray(np.clip(field + rng.normal(0, 20, field.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """21 images of three classes in the formats a folder holds: JPEG (4:2:0, 4:4:4,
    progressive, grey), PNG (RGB, RGBA, palette); 60×40 to 140×80, so every crop is under twice
    the output side (48) in height and Pillow decodes at full size."""
    root = tmp_path_factory.mktemp("dali") / "train"
    rng = np.random.default_rng(0)
    formats = [
        ("jpg", {"quality": 90}),
        ("jpg", {"quality": 85, "subsampling": 0}),
        ("jpg", {"quality": 90, "progressive": True}),
        ("png", {}),
    ]
    for i in range(21):
        size = (60 + 4 * i, 40 + 2 * i)
        image, (extension, options) = photo(rng, size), formats[i % len(formats)]
        if i in (5, 9):
            image = image.convert("L")
        if i == 11:
            image = image.convert("RGBA")
        if i == 15:
            image = image.convert("P")
        path = root / f"class_{i % 3}" / f"{i:02d}.{extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, **options)
    return str(root)


def make_loader(root, decoder, train=True, jitter=0.4, size=48, skip=False, **kwargs):
    """The training (or evaluation) loader of a folder (or an ImageList) with ``decoder``."""
    images = root if isinstance(root, ImageList) else image_list(root)
    dataset = ImageFileDataset(images, train, size=size, resize=size + 4, skip_bad_images=skip)
    options = dict(batch_size=4, mean=MEAN, std=STD, shuffle=train, color_jitter=jitter, seed=7)
    return FileDataLoader(dataset, decoder=decoder, **(options | kwargs))


def image_list(root):
    return ImageFolderLTDataModule(train=root, num_workers=0).splits["train"]


def batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(images.clone(), labels.clone()) for images, labels in loader]


def assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for (x, y), (u, v) in zip(a, b, strict=True):
        assert torch.equal(y, v) and x.shape == u.shape
        assert torch.equal(x, u), f"max difference {(x - u).abs().max() / LEVEL:.2f} levels"


# -- pixels -----------------------------------------------------------------------------------
@pytest.mark.parametrize("jitter", [0.0, 0.4])
@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_equal_the_pillow_decoders_bit_for_bit(folder, jitter, workers):
    pillow = make_loader(folder, "pil", jitter=jitter, num_workers=workers)
    dali = make_loader(folder, "dali", jitter=jitter, num_workers=workers)
    for epoch in (0, 1):
        assert_same_batches(batches(pillow, epoch), batches(dali, epoch))


def test_evaluation_batches_equal_the_pillow_decoders_bit_for_bit(folder):
    pillow = make_loader(folder, "pil", train=False, jitter=0.0)
    assert_same_batches(batches(pillow, 0), batches(make_loader(folder, "dali", train=False), 0))


def test_a_crop_is_the_box_drawn_from_the_sample_seed_resized(folder, tmp_path):
    """Against torchvision's resized_crop of Pillow's full decode at the box torchvision's
    algorithm draws from the sample's seed: a crop one pixel off would not be equal."""
    path = tmp_path / "photo.jpg"
    photo(np.random.default_rng(1), (200, 150)).save(path, quality=90)
    item = ImageList(str(tmp_path), ["photo.jpg"], torch.tensor([0]), "test")
    loader = make_loader(item, "dali", jitter=0.0)
    ((images, _),) = batches(loader, 3)
    generator = torch.Generator().manual_seed(loader.sampler.seed_for(SAMPLE_STREAM, 3, 0))
    top, left, h, w = random_resized_crop_box(150, 200, generator)
    flip = torch.rand(1, generator=generator).item() < 0.5
    full = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    expected = TF.resized_crop(full, top, left, h, w, [48, 48], antialias=True)
    expected = loader.normalize(expected.flip(-1) if flip else expected)
    assert torch.equal(images, expected)
    shifted = TF.resized_crop(full, top + 1, left, h, w, [48, 48], antialias=True)
    assert (loader.normalize(shifted.flip(-1) if flip else shifted) - images).abs().max() > LEVEL


def test_a_large_crop_is_within_a_few_levels_of_pillows_reduced_size_decoding(tmp_path):
    """Pillow decodes a crop of ≥ 2× the output side at 1/2, 1/4 or 1/8 scale (``draft``); DALI
    decodes it at full size: the same box, pixels within 3 levels on average."""
    photo(np.random.default_rng(2), (1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    item = ImageList(str(tmp_path), ["big.jpg"], torch.tensor([0]), "test")
    reduced = ImageFileDataset(item, train=False, draft=True)[0][0].float()
    loader = FileDataLoader(
        ImageFileDataset(item, train=False), 1, mean=(0, 0, 0), std=(1 / 255,) * 3, decoder="dali"
    )
    ((full, _),) = list(loader)
    difference = (full[0] - reduced).abs()
    assert 0 < difference.mean() < 3.0


# -- the loader's protocol ------------------------------------------------------------------
def test_ddp_shards_and_class_balanced_epochs_are_the_pillow_decoders(folder):
    for rank in (0, 1):
        pillow = make_loader(folder, "pil", rank=rank, world_size=2)
        dali = make_loader(folder, "dali", rank=rank, world_size=2)
        pillow.class_balanced = dali.class_balanced = True
        assert_same_batches(batches(pillow, 2), batches(dali, 2))


def test_state_dict_resumes_mid_epoch_with_the_remaining_batches(folder):
    reference = batches(make_loader(folder, "dali", num_workers=2), 1)
    interrupted = make_loader(folder, "dali", num_workers=2)
    interrupted.sampler.set_epoch(1)
    iterator = iter(interrupted)
    next(iterator), next(iterator)
    state = interrupted.state_dict()
    iterator.close()  # the batch in flight is collected: the pipeline is empty again
    assert state == {"epoch": 1, "batches_yielded": 2, "class_balanced": False}
    resumed = make_loader(folder, "dali", num_workers=2)
    resumed.load_state_dict(state)
    assert_same_batches(batches(resumed, 1), reference[2:])
    assert_same_batches(batches(interrupted, 1), reference)  # a new epoch after the early close


def test_an_epoch_left_early_never_hands_its_batch_in_flight_to_the_next(folder):
    """An exception's traceback can keep a left iterator alive: the next epoch must not get the
    batch DALI was decoding for it, and closing the old iterator later must not take one."""
    loader = make_loader(folder, "dali")
    reference = batches(make_loader(folder, "dali"), 1)
    left = iter(loader)
    next(left)  # batch 1 of epoch 0 is now in flight
    loader.sampler.set_epoch(1)
    fresh = iter(loader)
    got = [next(fresh)]
    left.close()
    got += list(fresh)
    assert_same_batches([(x.clone(), y) for x, y in got], reference)


# -- bad files and a missing extra ------------------------------------------------------------
def test_a_truncated_image_is_named_or_skipped_and_counted(folder, tmp_path):
    root = tmp_path / "train"
    for label, name in enumerate(["a", "b"]):
        for i in range(3):
            path = root / name / f"{name}{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo(np.random.default_rng(10 * label + i), (64, 48)).save(path, quality=90)
    data = (root / "a" / "a1.jpg").read_bytes()
    (root / "a" / "a1.jpg").write_bytes(data[: len(data) // 2])  # its header still reads
    with pytest.raises(BadImageError, match=r"a1\.jpg: image does not decode") as error:
        list(make_loader(str(root), "dali", batch_size=8))
    assert "\n" not in str(error.value)
    skipping = make_loader(str(root), "dali", batch_size=8, skip=True)
    with pytest.warns(UserWarning, match=r"skipped 1 image.*a1\.jpg"):
        ((images, labels),) = batches(skipping, 0)
    pillow = make_loader(str(root), "pil", batch_size=8, skip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ((expected, expected_labels),) = batches(pillow, 0)
    assert torch.equal(labels, expected_labels) and torch.equal(images, expected)


def test_without_the_extra_the_datamodule_says_what_to_install(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what a missing package looks like
    with pytest.raises(ImportError, match=r"^decoder='dali' needs NVIDIA DALI: pip install") as e:
        ImageFolderLTDataModule(train=folder, decoder="dali")
    assert "ltlight[dali]" in str(e.value) and "\n" not in str(e.value)


def test_without_the_extra_ltlight_fit_stops_with_one_line_saying_what_to_install(
    folder, monkeypatch, tmp_path, capsys
):
    from ltlight.cli import main

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "folder" / "ce.yaml"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config), f"--data.init_args.train={folder}",
              "--data.init_args.decoder=dali", "--trainer.logger=false"])  # fmt: skip
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert any(
        "decoder='dali' needs NVIDIA DALI: pip install 'ltlight[dali]'" in line for line in message
    ), message


def test_an_unknown_decoder_is_named_with_the_choices(folder):
    with pytest.raises(ValueError, match=r"decoder must be one of \('pil', 'dali'\), got 'cv2'"):
        ImageFolderLTDataModule(train=folder, decoder="cv2")
